"""Settings that job state reads from the environment (prefix `VSTEER_`).

Every deployable's settings extend these (through `webhooks.settings.WebhookSettings`), so the API, the
GPU workers and the webhook worker read the same variables.
"""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class JobStateSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSTEER_", extra="ignore")

    environment: Literal["dev", "test", "production"] = Field(
        "dev", description="`production` refuses development conveniences and placeholder secrets."
    )
    redis_url: str = Field("redis://localhost:6379/0", description="Redis for job state and the Celery broker.")
