"""The API's settings: one object, read from `VSTEER_*` environment variables, cached, checked at start.

API keys are stored hashed: `VSTEER_API_KEYS='{"<sha256 hex of the key>": "<tenant>"}'`; every key is
a tenant. In `dev` and `test` environments `VSTEER_DEV_API_KEYS='{"<plain key>": "<tenant>"}'` is a
convenience; production refuses it, as it refuses placeholder secrets.
"""

import hashlib
import re
from functools import lru_cache
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from storage.settings import StorageSettings
from webhooks.settings import WebhookSettings

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Built-in models that always have a text encoder: the tiny and toy models keep the tiny CLIP text tower beside them.
BUILTIN_TEXT_ENCODERS = frozenset({"tiny", "toy"})
# Tenants name storage folders: the same rule as `storage.keys` segments.
_TENANT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def hash_api_key(key: str) -> str:
    """What `VSTEER_API_KEYS` stores for `key`: its SHA-256 in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


class Settings(WebhookSettings, StorageSettings):
    api_keys: dict[str, str] = Field(
        default_factory=dict, description="`{sha256(key) hex: tenant}`: the accepted API keys, hashed."
    )
    dev_api_keys: dict[str, str] = Field(
        default_factory=dict, description="`{plain key: tenant}`, for dev and test only."
    )

    max_json_bytes: int = Field(24 * 1024 * 1024, ge=1024, description="Largest job document accepted.")
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="Largest asset upload accepted.")
    max_image_pixels: int = Field(
        4096 * 4096, ge=64 * 64, description="Largest image (width x height) decoded; more is refused."
    )
    allow_remote_images: bool = Field(
        False,
        description="Accept `https://` (and `http://`) image references, fetched by the worker behind the SSRF "
        "guard; set it for the workers too.",
    )

    default_model: str = Field("svd-xt", description="Model of a job that names none.")
    models: list[str] = Field(default_factory=lambda: ["svd-xt", "svd"], min_length=1, description="Known models.")

    prefer_wait_max_s: float = Field(60.0, ge=0, le=600, description="Longest `Prefer: wait=N` honoured.")
    idempotency_ttl_s: int = Field(24 * 3600, ge=60, description="How long an Idempotency-Key is remembered.")
    sse_heartbeat_s: float = Field(15.0, gt=0, description="Comment line sent on a quiet event stream.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (`https://app.example.com`) whose pages may call the API from a browser; none by "
        "default (a page the API serves itself is same-origin and needs none). `*` allows any origin.",
    )
    model_dimensions: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description='Widths of each model\'s directions, `{"name": {"embedding": 1024, "latent_channels": 4}}`, '
        "for models other than the built-in svd, svd-xt, tiny and toy.",
    )
    text_encoder_models: list[str] = Field(
        default_factory=list,
        description="Models whose workers have a CLIP text encoder (their spec's `text_encoder`), so that jobs "
        "may use `text` direction sources; the built-in tiny always has one, svd and svd-xt only when listed "
        "here or when VSTEER_MODELS holds the workers' specs and theirs names one.",
    )
    list_limit_max: int = Field(100, ge=1, le=1000, description="Largest page of `GET /v1/jobs`.")

    rate_limit_per_s: float = Field(
        20.0, ge=0, description="Requests per second each API key may make on average (token bucket); 0: no limit."
    )
    rate_limit_burst: int = Field(
        100, ge=1, description="Requests an API key may make at once after a quiet spell (the bucket's size)."
    )
    max_active_jobs_per_tenant: int = Field(
        100, ge=0, description="Queued plus running jobs a tenant may have; more is refused with 429. 0: no cap."
    )

    @model_validator(mode="before")
    @classmethod
    def _text_encoders_of_specs(cls, data: Any) -> Any:
        # Given the workers' VSTEER_MODELS (names to specs), a spec naming a `text_encoder` says so.
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            named = [
                name for name, spec in data["models"].items() if isinstance(spec, dict) and spec.get("text_encoder")
            ]
            listed = data.get("text_encoder_models") or []
            if named and isinstance(listed, list):
                data = {**data, "text_encoder_models": [*named, *(m for m in listed if m not in named)]}
        return data

    @field_validator("models", mode="before")
    @classmethod
    def _model_names(cls, value: object) -> object:
        # The workers' VSTEER_MODELS maps names to weights; the API needs only the names.
        return list(value) if isinstance(value, dict) else value

    @field_validator("api_keys")
    @classmethod
    def _hashed_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for digest, tenant in value.items():
            if not _SHA256_HEX.match(digest):
                raise ValueError(
                    f"VSTEER_API_KEYS maps sha256(key) in lowercase hex to a tenant, got key {digest[:8]!r}…"
                )
            _check_tenant(tenant)
        return value

    @field_validator("dev_api_keys")
    @classmethod
    def _dev_tenants(cls, value: dict[str, str]) -> dict[str, str]:
        for tenant in value.values():
            _check_tenant(tenant)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.default_model not in self.models:
            raise ValueError(f"VSTEER_DEFAULT_MODEL {self.default_model!r} is not in VSTEER_MODELS {self.models}")
        for problem in self.storage_problems(production=self.environment == "production"):
            raise ValueError(problem)
        if self.environment == "production":
            if self.dev_api_keys:
                raise ValueError("VSTEER_DEV_API_KEYS (plain keys) is refused in production; use VSTEER_API_KEYS")
            if not self.api_keys:
                raise ValueError("VSTEER_API_KEYS must name at least one key in production")
            if self.webhook_allow_private:
                raise ValueError("VSTEER_WEBHOOK_ALLOW_PRIVATE is refused in production")
        return self

    def has_text_encoder(self, model: str) -> bool:
        """Whether jobs on `model` may use `text` direction sources."""
        return model in BUILTIN_TEXT_ENCODERS or model in self.text_encoder_models

    def tenants_by_key_hash(self) -> dict[str, str]:
        """Every accepted key, hashed, and its tenant."""
        return {**{hash_api_key(k): t for k, t in self.dev_api_keys.items()}, **self.api_keys}


def _check_tenant(tenant: str) -> None:
    if not _TENANT.match(tenant) or ".." in tenant:
        raise ValueError(f"a tenant must match [A-Za-z0-9_-][A-Za-z0-9._-]{{0,127}}, got {tenant!r}")


@lru_cache
def get_settings() -> Settings:
    return Settings()
