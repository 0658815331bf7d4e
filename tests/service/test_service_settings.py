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


def test_the_workers_model_map_says_which_models_have_a_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the workers' VSTEER_MODELS, the API learns which specs name a `text_encoder` from it; the
    list in VSTEER_TEXT_ENCODER_MODELS adds to it (for an API given only names)."""
    models = '{"svd-xt": {"source": "/w/xt", "text_encoder": "/w/clip-h"}, "svd": {"source": "/w/svd"}, "mine": {}}'
    monkeypatch.setenv("VSTEER_MODELS", models)
    monkeypatch.setenv("VSTEER_TEXT_ENCODER_MODELS", '["mine"]')
    settings = Settings(**GOOD)
    assert settings.models == ["svd-xt", "svd", "mine"]
    assert [m for m in settings.models if settings.has_text_encoder(m)] == ["svd-xt", "mine"]
    monkeypatch.setenv("VSTEER_MODELS", '["svd-xt", "svd"]')  # names only: the list alone says
    monkeypatch.delenv("VSTEER_TEXT_ENCODER_MODELS")
    assert not Settings(**GOOD).has_text_encoder("svd-xt")
