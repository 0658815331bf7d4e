"""Settings that job state reads from the environment (prefix `VSTEER_`).

Every deployable's settings extend these (through `webhooks.settings.WebhookSettings`), so the API, the
GPU workers and the webhook worker read the same variables.
"""

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobstate.connections import parse


class JobStateSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VSTEER_", extra="ignore")

    environment: Literal["dev", "test", "production"] = Field(
        "dev", description="`production` refuses development conveniences and placeholder secrets."
    )
    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis for job state and, unless `broker_url` is set, the Celery broker: `redis://host:port/db`, "
        "`redis+sentinel://host:26379,host2:26379/<primary name>/<db>` (the primary the Sentinels name, followed "
        "through failovers) or `redis+cluster://host:port,host2:port` (job state only; set `broker_url`).",
    )
    broker_url: str | None = Field(
        None,
        description="The Celery broker's Redis when it is not `redis_url` (needed when that is a Redis Cluster, which "
        "Celery cannot use): `redis://…` or `redis+sentinel://…`.",
    )

    # A dead worker's job runs again within about `worker_lost_after_s + reap_every_s` seconds (the
    # broker's visibility timeout, hours, is only the last resort): a worker renews the lease of the
    # job it runs every `heartbeat_s`; a lease not renewed for `worker_lost_after_s` has lost its
    # worker, and the API's reaper, every `reap_every_s`, puts such jobs back on their queue.
    heartbeat_s: float = Field(
        5.0,
        gt=0,
        description="How often a worker renews the lease of the job it runs and reports its warm models.",
    )
    worker_lost_after_s: float = Field(
        30.0,
        gt=0,
        description="A running job whose worker has not renewed its lease for this long lost its worker: the "
        "reaper queues it again (the lost run counts toward `max_deliveries`) and a cancel ends it at once. "
        "At least twice `heartbeat_s`.",
    )
    reap_every_s: float = Field(
        5.0,
        ge=0,
        description="How often the API looks for running jobs whose worker was lost and queues them again; "
        "0: never (only the broker's visibility timeout delivers them again).",
    )
    max_deliveries: int = Field(
        3,
        ge=1,
        le=100,
        description="Runs a job may start; a job whose worker was lost that many times (a poison job) is failed "
        "instead of being run again.",
    )

    @property
    def broker(self) -> str:
        """The Celery broker's URL (as `redis_url` is written; `jobstate.connections.celery_broker` reads it)."""
        return self.broker_url or self.redis_url

    @model_validator(mode="after")
    def _redis_urls_make_sense(self) -> Self:
        for name, url in (("VSTEER_REDIS_URL", self.redis_url), ("VSTEER_BROKER_URL", self.broker_url)):
            if url is not None:
                try:
                    parse(url)
                except ValueError as problem:
                    raise ValueError(f"{name}: {problem}") from None
        if parse(self.broker).kind == "cluster":
            which = "VSTEER_BROKER_URL"
            if not self.broker_url:
                which = "VSTEER_REDIS_URL is a Redis Cluster, so VSTEER_BROKER_URL"
            raise ValueError(
                f"{which} must name one Redis or a Sentinel-managed one (redis:// or redis+sentinel://): "
                "Celery's Redis transport cannot use a Redis Cluster"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Self:
        if self.worker_lost_after_s < 2 * self.heartbeat_s:
            raise ValueError(
                f"VSTEER_WORKER_LOST_AFTER_S must be at least twice VSTEER_HEARTBEAT_S ({2 * self.heartbeat_s:g}), "
                f"got {self.worker_lost_after_s:g}: a live worker's job would be taken from it"
            )
        return self
