"""Settings of the GPU worker deployable, read once from `VSTEER_*` environment variables.

Job state and webhook settings (`VSTEER_REDIS_URL`, `VSTEER_ENVIRONMENT`, `VSTEER_WEBHOOK_*`) come
from `webhooks.settings.WebhookSettings`. Model definitions (`VSTEER_MODELS`, `VSTEER_DEFAULT_MODEL`,
`VSTEER_MODEL_MEMORY_BUDGET_GB`, `VSTEER_CACHE_DIR`) are read by `workers.models.ModelRegistry.from_env`;
this object holds the rest and the list of models this worker serves, which decides its queues.
"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from jobstate.queues import queue_for
from storage.settings import StorageSettings
from webhooks.settings import WebhookSettings


class WorkerSettings(WebhookSettings, StorageSettings):
    """Variable names follow the API's settings (`service.settings`), so one environment serves both."""

    default_model: str = Field("tiny", description="Model of jobs that name none.")
    worker_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models this worker serves, comma separated; it consumes `gpu.<model>` for each "
        "and loads them at start. `default_model` if unset.",
    )

    # Delivery: Redis re-delivers a message not acknowledged within the visibility timeout, so it must
    # exceed the longest wait in the queue plus the longest job, or a long job runs twice.
    job_time_limit_s: int = Field(3600, ge=10, description="Longest a job may run.")
    max_queue_wait_s: int = Field(6 * 3600, ge=0, description="Longest a job may wait in its queue.")
    visibility_timeout_s: int | None = Field(None, description="Broker visibility timeout; derived if unset.")
    redelivery_check_s: float | None = Field(
        None,
        gt=0,
        description="How often a worker looks for messages whose visibility timeout has passed (a dead worker's "
        "jobs) and puts them back in their queue; unset: kombu's default (every 100 s, and when a worker starts).",
    )
    max_deliveries: int = Field(
        3,
        ge=1,
        le=100,
        description="Runs a job may start; a job whose worker died that many times (a poison job) is failed "
        "on its next delivery instead of being run again.",
    )
    storage_retry_budget_s: float = Field(
        120.0, ge=0, description="How long uploads are retried (with backoff) while storage is unreachable."
    )
    state_retry_budget_s: float = Field(
        60.0, ge=0, description="How long a job's final state write is retried while Redis is unreachable."
    )

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
        for problem in self.storage_problems(production=self.environment == "production"):
            raise ValueError(problem)
        return self

    @property
    def broker(self) -> str:
        """The Celery broker is the job-state Redis: the API queues a job's task in the same script
        that records the job, so the two cannot live apart."""
        return self.redis_url

    @property
    def queues(self) -> list[str]:
        return [queue_for(m) for m in self.worker_models]


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    return WorkerSettings()
