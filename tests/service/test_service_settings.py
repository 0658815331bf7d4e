"""Settings fail fast on impossible combinations."""

import pytest
from pydantic import ValidationError

from service.settings import Settings, hash_api_key
from webhooks.settings import DEV_WEBHOOK_SECRET

GOOD = {
    "environment": "production",
    "api_keys": {hash_api_key("k"): "tenant-a"},
    "files_secret": "a-real-secret-from-the-vault",
    "webhook_secret": "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
}


def test_production_accepts_a_complete_configuration() -> None:
    settings = Settings(**GOOD)
    assert settings.tenants_by_key_hash() == {hash_api_key("k"): "tenant-a"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"files_secret": "change-me-vsteer-files-secret"}, "VSTEER_FILES_SECRET"),
        ({"webhook_secret": DEV_WEBHOOK_SECRET}, "VSTEER_WEBHOOK_SECRET"),
        ({"dev_api_keys": {"plain": "tenant-a"}}, "VSTEER_DEV_API_KEYS"),
        ({"api_keys": {}}, "VSTEER_API_KEYS"),
        ({"webhook_allow_private": True}, "VSTEER_WEBHOOK_ALLOW_PRIVATE"),
        ({"api_keys": {"not-a-hash": "tenant-a"}}, "sha256"),
        ({"api_keys": {hash_api_key("k"): "../etc"}}, "tenant"),
        ({"default_model": "sdxl"}, "VSTEER_DEFAULT_MODEL"),
        ({"storage_backend": "s3"}, "VSTEER_STORAGE_S3_BUCKET"),
    ],
)
def test_impossible_combinations_are_refused(override: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{**GOOD, **override})


def test_dev_keys_and_worker_style_model_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSTEER_DEV_API_KEYS", '{"dev-key": "dev"}')
    monkeypatch.setenv("VSTEER_MODELS", '{"tiny": {"source": "x"}}')
    monkeypatch.setenv("VSTEER_DEFAULT_MODEL", "tiny")
    settings = Settings()
    assert settings.tenants_by_key_hash() == {hash_api_key("dev-key"): "dev"}
    assert settings.models == ["tiny"]
