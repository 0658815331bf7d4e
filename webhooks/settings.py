"""Settings of webhook signing and delivery (`VSTEER_WEBHOOK_*`), on top of job state's.

The API checks webhook URLs against the same rules the webhook worker delivers by, and a GPU worker in
production refuses a development secret as they do, so all three deployables extend these settings.
"""

import base64
import binascii
from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from jobstate.config import JobStateSettings

# A well-known secret for local development only; refused in production.
DEV_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"vsteer-development-webhook-key").decode()


def check_webhook_secret(secret: str, what: str = "webhook secret") -> str:
    """`whsec_` followed by base64 of the key (Standard Webhooks); returns it unchanged."""
    if not secret.startswith("whsec_"):
        raise ValueError(f"a {what} must start with `whsec_`")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError(f"a {what} must be `whsec_` followed by base64") from None
    if len(key) < 16:
        raise ValueError(f"a {what} must hold at least 16 bytes of key, got {len(key)}")
    return secret


class WebhookSettings(JobStateSettings):
    webhook_secret: SecretStr = Field(
        SecretStr(DEV_WEBHOOK_SECRET), description="Default webhook signing secret, `whsec_<base64>`."
    )
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="Per-tenant webhook secrets: `{tenant: whsec_...}` (JSON)."
    )
    webhook_allow_private: bool = Field(
        False, description="Allow webhook URLs that resolve to private, loopback or link-local addresses."
    )
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="Delivery attempts before giving up.")
    webhook_backoff_base_s: float = Field(2.0, gt=0, description="First retry delay; doubles every attempt.")
    webhook_backoff_max_s: float = Field(900.0, gt=0, description="Longest retry delay.")
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of one delivery attempt.")

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        check_webhook_secret(value.get_secret_value())
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _check_secrets(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for tenant, secret in value.items():
            check_webhook_secret(secret.get_secret_value(), f"webhook secret of tenant {tenant!r}")
        return value

    @model_validator(mode="after")
    def _no_dev_secret_in_production(self) -> Self:
        if self.environment == "production" and self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
            raise ValueError("VSTEER_WEBHOOK_SECRET must be set in production (the development secret is public)")
        return self

    def webhook_secret_for(self, tenant: str) -> str:
        return (self.webhook_secrets.get(tenant) or self.webhook_secret).get_secret_value()


@lru_cache
def get_webhook_settings() -> WebhookSettings:
    return WebhookSettings()
