"""Celery tasks: thin, versioned, named explicitly. The service sends them by name."""

import re
from typing import Any

from celery.exceptions import Reject

from api_schemas import JobStatus
from jobstate.queues import RUN_JOB_TASK
from jobstate.records import JOB_ID_PATTERN
from workers.celery_app import app, worker_deps
from workers.job_runner import REDIS_DOWN, JobStateUnavailable, execute

_JOB_ID = re.compile(JOB_ID_PATTERN)
_TENANT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


@app.task(name=RUN_JOB_TASK)
def run_job_v1(job_id: str, tenant: str) -> dict[str, Any]:
    """Run one steering job to a terminal status; the outcome is written to job state."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"`job_id` must match {JOB_ID_PATTERN}, got {job_id!r}")
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ValueError(f"`tenant` must be an id of [A-Za-z0-9._-], got {tenant!r}")
    try:
        status = execute(job_id, tenant, worker_deps())
    except (JobStateUnavailable, *REDIS_DOWN) as exc:
        # Not acknowledged: the broker delivers it again (at once, or after the visibility timeout
        # when the broker is the Redis that is down), and the job is idempotent.
        raise Reject(f"job state unreachable: {exc}", requeue=True) from exc
    if status is JobStatus.queued:
        raise Reject("the worker is shutting down; the job goes back to its queue", requeue=True)
    return {"job_id": job_id, "status": status.value if status is not None else None}
