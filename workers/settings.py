"""Settings of the GPU worker deployable, read once from `VSTEER_*` environment variables.

Model definitions (`VSTEER_MODELS`, `VSTEER_DEFAULT_MODEL`, `VSTEER_MODEL_MEMORY_BUDGET_GB`,
`VSTEER_CACHE_DIR`) are read by `workers.models.ModelRegistry.from_env`; this object holds the rest
and the list of models this worker serves, which decides its queues.
"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The development default; refused in production so that file URLs cannot be forged.
PLACEHOLDER_FILES_SECRET = "dev-only-files-secret"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSTEER_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses placeholder secrets."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Job state (and the broker by default).")
    broker_url: str | None = Field(None, description="Celery broker; `redis_url` if unset.")

    default_model: str = Field("tiny", description="Model of jobs that name none.")
    worker_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models this worker serves, comma separated; it consumes `gpu.<model>` for each "
        "and loads them at start. `default_model` if unset.",
    )

    # Storage: `local` keeps objects in a folder and signs URLs to the API's /v1/files route.
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path = Field(Path("var/objects"), description="Folder of the local backend.")
    files_secret: SecretStr = Field(
        SecretStr(PLACEHOLDER_FILES_SECRET), description="HMAC key of local file URLs (the API's too)."
    )
    public_url: str = Field("", description="API base URL that local file URLs start with.")
    presign_expires_s: int = Field(
        3600, ge=1, le=7 * 24 * 3600, description="Lifetime of the download URLs in webhook bodies."
    )
    s3_bucket: str = "vsteer"
    s3_endpoint_url: str | None = Field(None, description="S3-compatible server the workers talk to.")
    s3_public_endpoint_url: str | None = Field(None, description="Endpoint clients download from.")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_max_attempts: int = Field(5, ge=1, le=20, description="Attempts per S3 call (standard retry mode).")

    # Delivery: Redis re-delivers a message not acknowledged within the visibility timeout, so it must
    # exceed the longest wait in the queue plus the longest job, or a long job runs twice.
    job_time_limit_s: int = Field(3600, ge=10, description="Longest a job may run.")
    max_queue_wait_s: int = Field(6 * 3600, ge=0, description="Longest a job may wait in its queue.")
    visibility_timeout_s: int | None = Field(None, description="Broker visibility timeout; derived if unset.")

    work_dir: Path | None = Field(None, description="Where jobs write before upload (system temp if unset).")
    heartbeat_s: float = Field(20.0, gt=0, description="How often warm models are reported to job state.")

    @field_validator("worker_models", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @model_validator(mode="after")
    def _coherent(self) -> "WorkerSettings":
        if not self.worker_models:
            self.worker_models = [self.default_model]
        floor = self.job_time_limit_s + self.max_queue_wait_s
        if self.visibility_timeout_s is None:
            self.visibility_timeout_s = floor + 600
        elif self.visibility_timeout_s <= floor:
            raise ValueError(
                f"VSTEER_VISIBILITY_TIMEOUT_S must exceed job_time_limit_s + max_queue_wait_s = {floor}, "
                f"got {self.visibility_timeout_s}: a job would be delivered twice"
            )
        placeholder = self.files_secret.get_secret_value() == PLACEHOLDER_FILES_SECRET
        if self.environment == "production" and self.storage == "local" and placeholder:
            raise ValueError("VSTEER_FILES_SECRET must be set in production (the placeholder is public)")
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("VSTEER_S3_BUCKET is required with VSTEER_STORAGE=s3")
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def queues(self) -> list[str]:
        return [queue_for(m) for m in self.worker_models]

    def storage_settings(self) -> dict[str, object]:
        """Keyword settings of `storage.factory.make_storage(self.storage, ...)`."""
        if self.storage == "local":
            return {
                "root": self.storage_dir,
                "secret": self.files_secret.get_secret_value(),
                "base_url": self.public_url,
            }
        return {
            "bucket": self.s3_bucket,
            "endpoint_url": self.s3_endpoint_url,
            "public_endpoint_url": self.s3_public_endpoint_url,
            "region": self.s3_region,
            "access_key_id": self.s3_access_key_id,
            "secret_access_key": self.s3_secret_access_key.get_secret_value()
            if self.s3_secret_access_key
            else None,
            "max_attempts": self.s3_max_attempts,
        }


def queue_for(model: str) -> str:
    """The Celery queue of a model's jobs (the service routes there by the same rule)."""
    return f"gpu.{model}"


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    return WorkerSettings()
