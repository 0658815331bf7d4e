"""The webhook message of a job, and how it is handed to the webhook worker (by task name)."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from api_schemas import JobStatus
from jobstate.queues import DELIVER_WEBHOOK_TASK, WEBHOOK_QUEUE
from jobstate.records import JobRecord, Presign, is_fit, to_fit_resource, to_resource

# The job document's `webhook.events` names: a running job's, and each terminal status's (`completed` is
# the older name of `succeeded`).
STARTED_EVENT = "started"
PROGRESS_EVENT = "progress"
EVENTS_FOR_STATUS = {
    JobStatus.succeeded: {"succeeded", "completed"},
    JobStatus.failed: {"failed"},
    JobStatus.canceled: {"canceled"},
}


class TaskSender(Protocol):
    def send_task(self, name: str, args: Sequence[Any] | None = ..., kwargs: dict[str, Any] | None = ...,
                  **options: Any) -> Any: ...  # fmt: skip


@dataclass(frozen=True)
class WebhookMessage:
    url: str
    body: str
    msg_id: str
    tenant: str

    def task_kwargs(self) -> dict[str, str]:
        return {"url": self.url, "body": self.body, "msg_id": self.msg_id, "tenant": self.tenant}


def job_webhook_message(record: JobRecord, presign: Presign) -> WebhookMessage | None:
    """The message for a job that reached a terminal status, for a running job's progress (the record
    carries it), or for a run that has just started (a running record without progress), or None when it
    asked for no webhook or not for this event."""
    hook = record.webhook()
    if hook is None:
        return None
    url, events = hook
    if record.status.is_terminal():
        if not EVENTS_FOR_STATUS[record.status] & set(events):
            return None
        kind, msg_id = record.status.value, f"msg_{record.id}_{record.status.value}"
        at = record.finished_at or record.created_at
    elif record.status is JobStatus.running and record.progress is not None and PROGRESS_EVENT in events:
        progress = record.progress
        kind, msg_id = PROGRESS_EVENT, f"msg_{record.id}_progress_{progress.stage}_{progress.step}"
        at = datetime.now(UTC)
    elif record.status is JobStatus.running and record.progress is None and STARTED_EVENT in events:
        # once per run: a job queued again after its worker was lost starts again
        kind, msg_id = STARTED_EVENT, f"msg_{record.id}_started_{record.attempts}"
        at = record.started_at or datetime.now(UTC)
    else:
        return None
    # A direction fit runs as a job; its messages carry the fit as its own resource shows it.
    subject, data = (
        ("direction_fit", to_fit_resource(record, presign)) if is_fit(record) else ("job", to_resource(record, presign))
    )
    payload = {
        "type": f"{subject}.{kind}",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": data.model_dump(mode="json", by_alias=True),
    }
    body = json.dumps(payload, separators=(",", ":"))
    return WebhookMessage(url=url, body=body, msg_id=msg_id, tenant=record.tenant)


def progress_worth_sending(stage: str, step: int, total: int, last: tuple[str, int] | None) -> tuple[str, int] | None:
    """Whether a progress report earns a `job.progress` webhook, given the last one sent (`(stage,
    quarter)`): when a stage starts, and when the denoising steps pass a quarter of their total.
    Returns the new `(stage, quarter)` to remember, or None."""
    quarter = 4 * step // total if total > 0 else 0
    if last is None or last[0] != stage or (stage == "denoise" and quarter > last[1]):
        return stage, quarter
    return None


def enqueue_job_webhook(sender: TaskSender, record: JobRecord, presign: Presign) -> bool:
    """Send the job's webhook task (if it asked for one); True when a task was sent."""
    message = job_webhook_message(record, presign)
    if message is None:
        return False
    sender.send_task(DELIVER_WEBHOOK_TASK, kwargs=message.task_kwargs(), queue=WEBHOOK_QUEUE)
    return True
