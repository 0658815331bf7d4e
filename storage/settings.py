"""Storage settings shared by the API and the workers (prefix `VSTEER_`), so one environment configures both.

`local` keeps objects in a folder and signs URLs to the API's `/v1/files` route with `files_secret`;
`s3` talks to any S3-compatible server and presigns URLs for the endpoint clients reach.
"""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# A public development default, so that a local stack signs and checks file URLs alike; every
# deployable refuses it in production, where it would let anyone forge file URLs.
PLACEHOLDER_FILES_SECRET = "change-me-vsteer-files-secret"


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSTEER_", extra="ignore")

    storage_backend: Literal["local", "s3"] = Field("local", description="Where assets and results live.")
    storage_local_dir: Path = Field(Path("var/storage"), description="Folder of the `local` backend.")
    storage_s3_bucket: str | None = Field(None, description="Bucket of the `s3` backend.")
    storage_s3_endpoint_url: str | None = Field(None, description="S3 endpoint this process talks to.")
    storage_s3_public_endpoint_url: str | None = Field(
        None, description="S3 endpoint that presigned URLs name (what clients can reach)."
    )
    storage_s3_region: str = Field("us-east-1", description="S3 region.")
    storage_s3_access_key_id: str | None = Field(None, description="S3 access key (else the default chain).")
    storage_s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    storage_s3_max_attempts: int = Field(5, ge=1, le=20, description="Attempts per S3 call (standard retries).")
    public_base_url: str = Field(
        "http://localhost:8000", description="Base URL of the API as clients see it (jobs' `urls`, local file URLs)."
    )
    files_secret: SecretStr = Field(
        SecretStr(PLACEHOLDER_FILES_SECRET), description="HMAC secret of local-storage file URLs."
    )
    presign_expiry_s: int = Field(3600, ge=60, le=7 * 24 * 3600, description="Lifetime of result URLs.")
    retention_days: int = Field(
        30,
        ge=0,
        le=36500,
        description="Days a finished job is kept: its record and events expire that long after it ends (a Redis "
        "TTL set with the terminal state) and its result files by the bucket's lifecycle rule (`s3`) or the API's "
        "daily sweep (`local`); 0 keeps everything.",
    )

    def storage_problems(self, production: bool) -> list[str]:
        """What is wrong with this storage configuration; empty when it can start."""
        problems = []
        if self.storage_backend == "s3" and not self.storage_s3_bucket:
            problems.append("VSTEER_STORAGE_S3_BUCKET is required with VSTEER_STORAGE_BACKEND=s3")
        if production and self.storage_backend == "local" and self.uses_placeholder_secret():
            problems.append("VSTEER_FILES_SECRET must be set in production (the placeholder is public)")
        return problems

    def uses_placeholder_secret(self) -> bool:
        return self.files_secret.get_secret_value() == PLACEHOLDER_FILES_SECRET

    def storage_kwargs(self) -> tuple[str, dict[str, Any]]:
        """Arguments of `storage.factory.make_storage` for the configured backend."""
        if self.storage_backend == "local":
            return "local", {
                "root": self.storage_local_dir,
                "secret": self.files_secret.get_secret_value(),
                "base_url": self.public_base_url,
            }
        secret = self.storage_s3_secret_access_key
        return "s3", {
            "bucket": self.storage_s3_bucket,
            "endpoint_url": self.storage_s3_endpoint_url,
            "public_endpoint_url": self.storage_s3_public_endpoint_url,
            "region": self.storage_s3_region,
            "access_key_id": self.storage_s3_access_key_id,
            "secret_access_key": secret.get_secret_value() if secret is not None else None,
            "max_attempts": self.storage_s3_max_attempts,
        }
