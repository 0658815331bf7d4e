"""Enqueue by task name: a producer-only Celery app on the Redis broker; the service never imports workers.

`send_task` blocks on the broker, so it runs in a worker thread and the event loop keeps serving.
"""

from functools import partial

import anyio.to_thread
from celery import Celery

from jobstate.records import JobRecord, Presign
from jobstate.webhooks import enqueue_job_webhook
from service.settings import Settings

RUN_JOB_TASK = "vsteer.run_job.v1"


def queue_for(model: str) -> str:
    """Jobs of a model go to its own queue, so worker pools can specialise."""
    return f"gpu.{model}"


def make_producer(settings: Settings) -> Celery:
    app = Celery("vsteer-api", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=False,
        # A broker outage should surface as a 503 within seconds, not hang a request.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    )
    return app


class JobQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    async def enqueue_job(self, job_id: str, tenant: str, model: str) -> None:
        send = partial(
            self.celery.send_task, RUN_JOB_TASK, kwargs={"job_id": job_id, "tenant": tenant}, queue=queue_for(model)
        )
        await anyio.to_thread.run_sync(send)

    async def enqueue_webhook(self, record: JobRecord, presign: Presign) -> bool:
        return await anyio.to_thread.run_sync(enqueue_job_webhook, self.celery, record, presign)

    def close(self) -> None:
        self.celery.close()
