"""The CPU worker: webhooks (queue `webhooks`) and a comparison's side-by-side (queue `cpu`).

    celery -A workers.cpu_app worker -Q webhooks,cpu --pool threads --concurrency 8

It loads no model and never imports torch: the composition decodes and encodes video with PyAV
and reads and writes storage, work that would otherwise hold a GPU worker (and its GPU) idle. The
webhook task is the webhook worker's own (`webhooks.celery_app`); this app adds the composition.
"""

import logging
import re
from functools import lru_cache
from typing import Any

from celery import Celery, Task
from pydantic_settings import SettingsConfigDict

from jobstate.comparisons import COMPARISON_ID_PATTERN
from jobstate.queues import COMPOSE_COMPARISON_TASK, CPU_QUEUE, WEBHOOK_QUEUE
from jobstate.store import JobStore
from storage.base import Storage
from storage.factory import make_storage
from storage.settings import StorageSettings
from webhooks.celery_app import app as webhook_app
from webhooks.settings import WebhookSettings
from workers.comparison import compose_comparison

log = logging.getLogger(__name__)


class CpuWorkerSettings(WebhookSettings, StorageSettings):
    """Redis and the webhook settings (`WebhookSettings`), and storage (`StorageSettings`)."""

    model_config = SettingsConfigDict(env_prefix="VSTEER_", extra="ignore")


@lru_cache
def get_cpu_worker_settings() -> CpuWorkerSettings:
    return CpuWorkerSettings()


class _Clients:
    """Redis and storage, built on the first task (nothing is opened at import)."""

    def __init__(self, settings: CpuWorkerSettings) -> None:
        self.settings = settings
        self._store: JobStore | None = None
        self._storage: Storage | None = None

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore.from_url(
                self.settings.redis_url,
                broker_url=self.settings.broker_url,
                socket_timeout=10,
                socket_connect_timeout=5,
            )
        return self._store

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            kind, kwargs = self.settings.storage_kwargs()
            self._storage = make_storage(kind, **kwargs)
        return self._storage


def register_compose_task(app: Celery, clients: _Clients) -> Task:
    """Register `vsteer.compose_comparison.v1` on `app`."""

    @app.task(name=COMPOSE_COMPARISON_TASK, acks_late=True, ignore_result=True, shared=False)
    def compose(comparison_id: str, tenant: str) -> dict[str, Any]:
        if not re.match(COMPARISON_ID_PATTERN, comparison_id):
            log.warning("dropped a composition of a malformed comparison id %r", comparison_id)
            return {"outcome": "malformed"}
        return {"outcome": compose_comparison(clients.store, clients.storage, tenant, comparison_id)}

    return compose


def make_cpu_app(settings: CpuWorkerSettings, app: Celery) -> Celery:
    """The webhook worker's app (`webhooks.celery_app.app`) with the composition task added."""
    register_compose_task(app, _Clients(settings))
    return app


QUEUES = (WEBHOOK_QUEUE, CPU_QUEUE)
# `celery -A workers.cpu_app worker` finds this; building it reads settings and opens nothing.
app = make_cpu_app(get_cpu_worker_settings(), webhook_app)
