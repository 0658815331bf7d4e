"""The webhook delivery task: Celery name `vsteer.deliver_webhook.v1`, queue `webhooks`.

Run a light worker for it (no GPU, no torch):

    celery -A webhooks.celery_app worker -Q webhooks --pool threads --concurrency 8

How to enqueue (from a GPU worker when a job reaches a terminal state, or from the API):

    from webhooks.messages import enqueue_job_webhook
    record = store.get_any(job_id)                       # the terminal record
    enqueue_job_webhook(celery_app, record, presign=lambda key: storage.presigned_url(key, 3600))

which is, by hand:

    celery_app.send_task(
        "vsteer.deliver_webhook.v1",
        kwargs={"url": str,       # the job's webhook.url
                "body": str,      # the exact JSON text to POST (signed as is)
                "msg_id": str,    # webhook-id, `msg_<job_id>_<status>`; the same on every retry
                "tenant": str},   # picks the signing secret: VSTEER_WEBHOOK_SECRETS[tenant],
                                  # else VSTEER_WEBHOOK_SECRET
        queue="webhooks",
    )

Every attempt re-checks the URL against the SSRF guard and signs with a fresh timestamp; a non-2xx
answer or a network error is retried after `backoff_delay` (exponential with jitter) up to
`VSTEER_WEBHOOK_MAX_ATTEMPTS`; a refused URL is not retried. Secrets never travel through the broker.
"""

import logging
from typing import Any

from celery import Celery, Task

from jobstate.connections import celery_broker
from jobstate.queues import DELIVER_WEBHOOK_TASK, WEBHOOK_QUEUE
from webhooks.delivery import backoff_delay, deliver
from webhooks.settings import WebhookSettings, get_webhook_settings

log = logging.getLogger(__name__)


def register_webhook_task(app: Celery, settings: WebhookSettings) -> Task:
    """Register `vsteer.deliver_webhook.v1` on `app`; returns the task."""

    @app.task(name=DELIVER_WEBHOOK_TASK, bind=True, max_retries=None, acks_late=True, ignore_result=True)
    def deliver_webhook(self: Task, url: str, body: str, msg_id: str, tenant: str) -> dict[str, Any]:
        attempt = self.request.retries + 1
        outcome = deliver(
            url,
            body,
            settings.webhook_secret_for(tenant),
            msg_id,
            attempt,
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
        )
        if outcome.ok:
            return {"delivered": True, "attempt": attempt, "status_code": outcome.status_code}
        if outcome.permanent or attempt >= settings.webhook_max_attempts:
            log.warning("webhook %s abandoned after attempt %d: %s", msg_id, attempt, outcome.error)
            return {"delivered": False, "attempt": attempt, "error": outcome.error}
        delay = backoff_delay(attempt, settings.webhook_backoff_base_s, settings.webhook_backoff_max_s)
        raise self.retry(countdown=delay)

    return deliver_webhook


def make_webhook_app(settings: WebhookSettings) -> Celery:
    """A Celery app that only delivers webhooks, on the Redis broker from settings."""
    broker, options = celery_broker(settings.broker)
    app = Celery("vsteer-webhooks", broker=broker)
    app.conf.update(
        broker_transport_options=options,
        task_default_queue=WEBHOOK_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    register_webhook_task(app, settings)
    return app


# `celery -A webhooks.celery_app worker` finds this; building it reads settings and opens nothing.
app = make_webhook_app(get_webhook_settings())
