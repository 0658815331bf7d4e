"""Enqueue by task name; the service never imports workers.

A job's task message is kept on its record by the job store's create script, in the same step that
records the job, and then pushed onto its queue (`job_task`, `jobstate.dispatch`); webhooks go
through a producer-only Celery app on the Redis broker, whose blocking `send_task` runs in a worker
thread so the event loop keeps serving.
"""

import anyio.to_thread
from celery import Celery

from jobstate.connections import celery_broker
from jobstate.queues import RUN_JOB_TASK, queue_for
from jobstate.records import JobRecord, Presign
from jobstate.task_message import TaskMessage, task_message
from service.settings import Settings
from webhooks.messages import enqueue_job_webhook


def make_producer(settings: Settings) -> Celery:
    broker, options = celery_broker(settings.broker)
    app = Celery("vsteer-api", broker=broker, set_as_current=False)
    app.conf.update(
        broker_transport_options=options,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=False,
        # A broker outage should surface as a 503 within seconds, not hang a request.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    )
    return app


def job_task(job_id: str, tenant: str, model: str) -> TaskMessage:
    """The task that runs a job, on its model's queue; the Celery task id is the job id."""
    return task_message(RUN_JOB_TASK, {"job_id": job_id, "tenant": tenant}, queue_for(model), task_id=job_id)


class JobQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    async def enqueue_webhook(self, record: JobRecord, presign: Presign) -> bool:
        return await anyio.to_thread.run_sync(enqueue_job_webhook, self.celery, record, presign)

    def close(self) -> None:
        self.celery.close()
