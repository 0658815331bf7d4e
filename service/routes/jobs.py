"""Jobs: submit, read, list, cancel, follow (server-sent events), and fetch result files."""

import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api_schemas import FieldError, JobList, JobRequest, JobResource, JobStatus
from jobstate.errors import IdempotencyConflict, RateLimited, TooManyActiveJobs
from jobstate.operations import body_hash
from jobstate.records import JOB_ID_PATTERN, JobRecord, new_job_id
from jobstate.store import AsyncJobStore
from service.checks import check_document, resolve_defaults
from service.deps import (
    QueueDep,
    SettingsDep,
    StorageDep,
    StoreDep,
    Submitter,
    Tenant,
    rate_limited,
    remember_empty,
    submission_rate_limit,
    token_taken,
)
from service.errors import ProblemError, invalid, not_found
from service.queue import job_task
from service.routes.common import model_response, presigner, problems, resource

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="Job id, `job_...`.", max_length=64)]
ACTIVE_CAP_RETRY_AFTER_S = 5
_WAIT = re.compile(r"^\s*wait\s*=\s*(\d+(?:\.\d+)?)\s*$", re.IGNORECASE)


def prefer_wait(prefer: str | None) -> float | None:
    """Seconds of `Prefer: wait=N` (RFC 7240), None when absent; unusable preferences are ignored."""
    for item in (prefer or "").split(","):
        match = _WAIT.match(item.split(";")[0])
        if match:
            return float(match.group(1))
    return None


async def _own(store: AsyncJobStore, tenant: str, job_id: str) -> JobRecord:
    record = await store.get(tenant, job_id)
    if record is None:
        raise not_found("job", job_id)
    return record


@router.post(
    "",
    status_code=202,
    response_model=JobResource,
    responses={
        200: {"model": JobResource, "description": "Finished within `Prefer: wait`."},
        **problems(401, 413, 422, 429, 503),
    },
    summary="Submit a job",
)
async def submit_job(
    document: JobRequest,
    caller: Submitter,
    request: Request,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Same key and body → the same job; same key, other body → 422.",
        ),
    ] = None,
    prefer: Annotated[
        str | None, Header(description="`wait=N`: hold the answer up to N seconds for the job to finish.")
    ] = None,
) -> Response:
    tenant = caller.tenant
    # 1. check the document against this deployment (models, assets, paths, inline images, webhook)
    await check_document(document, tenant, store, settings)
    # 2. resolve what the service decides: the model and, when left out, the seed
    accepted = resolve_defaults(document, settings, seed=secrets.randbelow(2**32))
    model = accepted.model or settings.default_model
    # 3. in one Redis script: take the key's rate-limit token, record the job and queue its task, once
    #    per Idempotency-Key (the hash is of the document as sent, before defaults; a replayed request
    #    does not queue again)
    idempotency = (idempotency_key, body_hash(document.dump())) if idempotency_key else None
    job_id = new_job_id()
    try:
        created = await store.create(
            job_id,
            tenant,
            model,
            accepted.dump(),
            idempotency,
            settings.idempotency_ttl_s,
            max_active=settings.max_active_jobs_per_tenant,
            task=job_task(job_id, tenant, model),
            rate=submission_rate_limit(request, settings, caller.key_digest),
        )
    except RateLimited as exc:
        remember_empty(request, caller.key_digest, exc.retry_after_s)
        raise rate_limited(settings, exc.retry_after_s) from None
    except TooManyActiveJobs as exc:
        # 429, not 409: nothing is wrong with this job; the tenant may submit it once others finish.
        raise ProblemError(
            429,
            "Too Many Requests",
            f"{exc}; submit again when some of them have finished",
            type_="too-many-active-jobs",
            headers={"Retry-After": str(ACTIVE_CAP_RETRY_AFTER_S)},
        ) from None
    except IdempotencyConflict as exc:
        raise invalid(
            [
                FieldError(
                    field="Idempotency-Key",
                    rule="idempotency_key_reused",
                    message=f"the key was used for job {exc.job_id} with a different body",
                )
            ],
            title="Idempotency-Key reused",
        ) from None
    finally:
        token_taken(request)  # by the script, whatever it answered
    record = created.record
    headers = {"Location": f"/v1/jobs/{record.id}"}
    # 4. hold the answer while the client prefers to wait
    wait = prefer_wait(prefer)
    if wait is not None:
        applied = min(wait, settings.prefer_wait_max_s)
        record = await store.wait_terminal(tenant, record.id, applied) or record
        headers["Preference-Applied"] = f"wait={applied:g}"
    # A job just created is answered with the document already validated here, not re-read.
    same = created.created and record is created.record
    body = resource(record, storage, settings, request=accepted if same else None)
    return model_response(body, 200 if record.status.is_terminal() else 202, headers)


@router.get("/{job_id}", response_model=JobResource, responses=problems(401, 404, 422, 503), summary="Get a job")
async def get_job(
    job_id: JobId, tenant: Tenant, store: StoreDep, storage: StorageDep, settings: SettingsDep
) -> Response:
    return model_response(resource(await _own(store, tenant, job_id), storage, settings))


@router.get("", response_model=JobList, responses=problems(401, 422, 503), summary="List jobs, newest first")
async def list_jobs(
    tenant: Tenant,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    cursor: Annotated[
        str | None, Query(pattern=JOB_ID_PATTERN, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Jobs per page (at most the configured maximum).")] = 20,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
) -> JobList:
    if limit > settings.list_limit_max:
        raise invalid(
            [
                FieldError(
                    field="limit",
                    rule="less_than_equal",
                    message=f"`limit` must be at most {settings.list_limit_max}, got {limit}",
                )
            ],
            title="Invalid request",
        )
    page = await store.list_jobs(tenant, cursor=cursor, limit=limit, status=status)
    return JobList(items=[resource(r, storage, settings) for r in page.records], next_cursor=page.next_cursor)


@router.post(
    "/{job_id}/cancel",
    response_model=JobResource,
    responses={
        202: {"model": JobResource, "description": "Cancel requested; the worker stops within a step."},
        **problems(401, 404, 409, 422, 503),
    },
    summary="Cancel a queued or running job",
)
async def cancel_job(
    job_id: JobId,
    tenant: Tenant,
    store: StoreDep,
    storage: StorageDep,
    queue: QueueDep,
    settings: SettingsDep,
    response: Response,
) -> JobResource:
    await _own(store, tenant, job_id)
    outcome, record = await store.request_cancel(job_id)
    if record is None:
        raise not_found("job", job_id)
    if outcome == "canceled":
        # Canceled while queued: no worker will announce it, so the API sends the webhook.
        try:
            await queue.enqueue_webhook(record, presigner(storage, settings))
        except Exception:
            # The job is canceled either way; a lost webhook must not turn that into an error.
            log.exception("could not queue the webhook of canceled job %s", job_id)
    elif outcome == "requested":
        response.status_code = 202
    elif record.status is not JobStatus.canceled:
        raise ProblemError(409, "Conflict", f"job {job_id!r} already {record.status.value}", type_="conflict")
    return resource(record, storage, settings)


@router.get(
    "/{job_id}/events",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`job` events (the whole resource: first, and on every status change) and "
            "`progress` events; the stream ends after a terminal status.",
        },
        **problems(401, 404, 422, 503),
    },
    response_class=StreamingResponse,
    summary="Follow a job (server-sent events)",
)
async def job_events(
    job_id: JobId, tenant: Tenant, store: StoreDep, storage: StorageDep, settings: SettingsDep
) -> StreamingResponse:
    await _own(store, tenant, job_id)

    async def stream() -> AsyncIterator[str]:
        async with aclosing(store.watch(job_id, heartbeat_s=settings.sse_heartbeat_s)) as events:
            async for event in events:
                if event.kind == "job" and event.record is not None:
                    body = resource(event.record, storage, settings).model_dump_json(by_alias=True)
                    yield f"event: job\ndata: {body}\n\n"
                elif event.kind == "progress" and event.progress is not None:
                    yield f"event: progress\ndata: {event.progress.model_dump_json()}\n\n"
                else:
                    yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get(
    "/{job_id}/result/{name:path}",
    status_code=307,
    response_class=RedirectResponse,
    responses={307: {"description": "Redirect to a fresh presigned URL."}, **problems(401, 404, 422, 503)},
    summary="Download one result file (`video`, `poster`, `preview`, `manifest`, `frames`, `clips/<k>`)",
)
async def job_result_file(
    job_id: JobId, name: str, tenant: Tenant, store: StoreDep, storage: StorageDep, settings: SettingsDep
) -> RedirectResponse:
    record = await _own(store, tenant, job_id)
    artifact = record.result.artifacts().get(name) if record.result is not None else None
    if artifact is None:
        raise not_found("result file", f"{job_id}/{name}")
    return RedirectResponse(storage.presigned_url(artifact.key, settings.presign_expiry_s), status_code=307)


__all__ = ["router"]
