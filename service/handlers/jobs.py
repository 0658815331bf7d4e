"""Jobs: submit, read, list, cancel, follow and fetch result files, for the routes in `service.routes.jobs`.

Job state's refusals (over the rate, over the tenant's active jobs, a reused Idempotency-Key) pass
through as raised; `service.errors` answers them.
"""

import logging
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, Request

from api_schemas import JobList, JobRequest, JobResource, JobStatus, Progress
from api_schemas.problems import ProblemType
from jobstate.errors import RateLimited
from jobstate.operations import Created, body_hash
from jobstate.records import JobRecord, Presigner, is_fit, is_job, new_job_id, to_resource
from jobstate.store import AsyncJobStore
from service.checks import check_document, resolve_defaults
from service.deps import (
    Caller,
    QueueDep,
    SettingsDep,
    StorageDep,
    StoreDep,
    remember_empty,
    submission_rate_limit,
    token_taken,
)
from service.errors import ProblemError, check_page_limit, not_found
from service.handlers.anchors import apply_anchor
from service.handlers.assets import store_inline_images
from service.queue import JobQueue, job_task
from service.settings import Settings
from storage.base import Storage

log = logging.getLogger(__name__)
_WAIT = re.compile(r"^\s*wait\s*=\s*(\d+(?:\.\d+)?)\s*$", re.IGNORECASE)


def prefer_wait(prefer: str | None) -> float | None:
    """Seconds of `Prefer: wait=N` (RFC 7240), None when absent; unusable preferences are ignored."""
    for item in (prefer or "").split(","):
        match = _WAIT.match(item.split(";")[0])
        if match:
            return float(match.group(1))
    return None


@dataclass(frozen=True)
class Answer:
    """A job as the route sends it: 200, or 202 while it is still under way, with its headers."""

    job: JobResource
    status_code: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


class JobHandler:
    """The job routes' one collaborator, over the clients a request is injected with."""

    def __init__(self, store: AsyncJobStore, storage: Storage, queue: JobQueue, settings: Settings) -> None:
        self.store = store
        self.storage = storage
        self.queue = queue
        self.settings = settings

    async def submit(
        self, document: JobRequest, caller: Caller, request: Request, idempotency_key: str | None, prefer: str | None
    ) -> Answer:
        # 1. merge the anchor set it cites, if any, under its own fields
        merged = await apply_anchor(document, caller.tenant, self.store)
        # 2. check the document against this deployment (models, assets, directions, paths, inline images, webhook)
        await check_document(merged, caller.tenant, self.store, self.settings, self.storage)
        # 3. store inline images as assets, so the job cites `asset:<id>` and never carries image bytes
        merged = await store_inline_images(merged, caller.tenant, self.store, self.storage)
        # 4. resolve what the service decides: the model and, when left out, the seed
        accepted = resolve_defaults(merged, self.settings, seed=secrets.randbelow(2**32))
        # 5. record the job and queue its task
        created = await self._create(document, accepted, caller, request, idempotency_key)
        record = created.record
        headers = {"Location": f"/v1/jobs/{record.id}"}
        # 6. hold the answer while the client prefers to wait
        wait = prefer_wait(prefer)
        if wait is not None:
            applied = min(wait, self.settings.prefer_wait_max_s)
            record = await self.store.wait_terminal(caller.tenant, record.id, applied) or record
            headers["Preference-Applied"] = f"wait={applied:g}"
        # A job just created is answered with the document already validated here, not re-read.
        same = created.created and record is created.record
        job = await self.view(record, request=accepted if same else None)
        return Answer(job, 200 if record.status.is_terminal() else 202, headers)

    async def _create(
        self,
        document: JobRequest,
        accepted: JobRequest,
        caller: Caller,
        request: Request,
        idempotency_key: str | None,
    ) -> Created:
        """In one Redis script: take the key's rate-limit token, record the job and queue its task, once
        per Idempotency-Key (the hash is of the document as sent, before defaults; a replayed request
        does not queue again)."""
        idempotency = (idempotency_key, body_hash(document.dump())) if idempotency_key else None
        model = accepted.model or self.settings.default_model
        job_id = new_job_id(caller.tenant)
        try:
            return await self.store.create(
                job_id,
                caller.tenant,
                model,
                accepted.dump(),
                idempotency=idempotency,
                idempotency_ttl_s=self.settings.idempotency_ttl_s,
                max_active=self.settings.max_active_jobs_per_tenant,
                task=job_task(job_id, caller.tenant, model),
                rate=submission_rate_limit(request, self.settings, caller.key_digest),
                retain_s=self.settings.retention_days * 86400,
            )
        except RateLimited as exc:
            remember_empty(request, caller.key_digest, exc.retry_after_s)
            raise
        finally:
            token_taken(request)  # by the script, whatever it answered

    async def own(self, tenant: str, job_id: str) -> JobRecord:
        """The tenant's job; 404 when there is none."""
        record = await self.store.get(tenant, job_id)
        if record is None or is_fit(record):  # a direction fit is read at /v1/directions/fits
            raise not_found("job", job_id)
        return record

    async def get(self, tenant: str, job_id: str) -> JobResource:
        return await self.view(await self.own(tenant, job_id))

    async def page(self, tenant: str, cursor: str | None, limit: int, status: JobStatus | None) -> JobList:
        """A page of the tenant's jobs, newest first."""
        check_page_limit(limit, self.settings.list_limit_max)
        # direction fits share the index and are read at /v1/directions/fits
        page = await self.store.list_jobs(tenant, cursor=cursor, limit=limit, status=status, keep=is_job)
        queued = [r.id for r in page.records if r.status is JobStatus.queued]
        positions = dict(zip(queued, await self.store.queue_positions(queued), strict=True))
        items = [self.resource(r, queue_position=positions.get(r.id)) for r in page.records]
        return JobList(items=items, next_cursor=page.next_cursor)

    async def cancel(self, tenant: str, job_id: str) -> Answer:
        """Cancel a queued job at once (200), or ask a running one's worker to stop (202)."""
        await self.own(tenant, job_id)
        record, status_code = await cancel_record(self.store, self.queue, self.presign, job_id, "job")
        return Answer(await self.view(record), status_code)

    async def delete(self, tenant: str, job_id: str) -> None:
        """Remove a finished job: its result files from storage, then its record. A queued or running job
        is refused with 409 (cancel it first), so no worker can write to a job that is gone."""
        record = await self.own(tenant, job_id)
        if not record.status.is_terminal():
            raise job_active(job_id, record.status)
        # 1. the files its result lists (a failed or canceled job stored none)
        if record.result is not None:
            for artifact in record.result.artifacts().values():
                await anyio.to_thread.run_sync(self.storage.delete, artifact.key)
        # 2. the record and its index entries
        outcome, status = await self.store.delete(job_id)
        if outcome == "missing":
            raise not_found("job", job_id)
        if outcome == "active" and status is not None:
            raise job_active(job_id, status)

    async def follow(self, tenant: str, job_id: str, last_event_id: str | None = None) -> AsyncIterator[str]:
        """The job's server-sent events. Ownership is checked now, so a 404 is answered before the stream.
        A client resuming with `Last-Event-ID` is not sent again the state it already holds."""
        await self.own(tenant, job_id)
        return self._events(job_id, last_event_id)

    async def _events(self, job_id: str, last_event_id: str | None) -> AsyncIterator[str]:
        held = last_event_id  # the state the client holds, by its event id
        attempts = 0
        async with aclosing(self.store.watch(job_id, heartbeat_s=self.settings.sse_heartbeat_s)) as events:
            async for event in events:
                if event.kind == "job" and event.record is not None:
                    record, attempts = event.record, event.record.attempts
                    progress = record.progress
                    event_id = state_event_id(record.status, attempts, progress)
                    if event_id != held or record.status.is_terminal():
                        body = (await self.view(record)).model_dump_json(by_alias=True)
                        yield f"id: {event_id}\nevent: job\ndata: {body}\n\n"
                elif event.kind == "progress" and event.progress is not None:
                    event_id = state_event_id(JobStatus.running, attempts, event.progress)
                    if event_id != held:
                        yield f"id: {event_id}\nevent: progress\ndata: {event.progress.model_dump_json()}\n\n"
                elif event.kind == "preview" and event.preview is not None:
                    # No `id:`: a preview is not state a resumed stream must repeat or skip.
                    yield f"event: preview\ndata: {event.preview.model_dump_json()}\n\n"
                    continue
                else:
                    yield ": keep-alive\n\n"
                    continue
                held = None  # only the first event can repeat what the client holds

    async def result_url(self, tenant: str, job_id: str, name: str) -> str:
        """A fresh presigned URL of one of the job's result files."""
        record = await self.own(tenant, job_id)
        artifact = record.result.artifacts().get(name) if record.result is not None else None
        if artifact is None:
            raise not_found("result file", f"{job_id}/{name}")
        return self.presign(artifact.key)

    @property
    def presign(self) -> Presigner:
        """Result URLs of the configured lifetime, and job URLs under the public base URL."""
        return presigner(self.storage, self.settings)

    def resource(
        self, record: JobRecord, request: JobRequest | None = None, queue_position: int | None = None
    ) -> JobResource:
        """The job as the client sees it; result URLs are presigned now, so their expiry is fresh.
        `request` is the record's document where the caller already holds it validated."""
        return to_resource(record, self.presign, request, queue_position)

    async def view(self, record: JobRecord, request: JobRequest | None = None) -> JobResource:
        """`resource`, with a queued job's place in its model's queue read now."""
        position = None
        if record.status is JobStatus.queued:
            (position,) = await self.store.queue_positions([record.id])
        return self.resource(record, request, position)


async def cancel_record(
    store: AsyncJobStore, queue: JobQueue, presign: Presigner, job_id: str, what: str
) -> tuple[JobRecord, int]:
    """Cancel a queued job (or fit, `what`) at once (200), or ask its worker to stop (202); 409 when it
    already ended otherwise. The caller has checked that the tenant owns it."""
    outcome, record = await store.request_cancel(job_id)
    if record is None:
        raise not_found(what, job_id)
    status_code = 200
    if outcome == "canceled":
        # Canceled while queued: no worker will announce it, so the API sends the webhook.
        try:
            await queue.enqueue_webhook(record, presign)
        except Exception:
            # It is canceled either way; a lost webhook must not turn that into an error.
            log.exception("could not queue the webhook of canceled %s %s", what, job_id)
    elif outcome == "requested":
        status_code = 202
    elif record.status is not JobStatus.canceled:
        raise ProblemError(
            409, "Conflict", f"{what} {job_id!r} already {record.status.value}", type_=ProblemType.conflict
        )
    return record, status_code


def presigner(storage: Storage, settings: Settings) -> Presigner:
    """Result URLs of the configured lifetime, and resource URLs under the public base URL."""
    return Presigner(storage.presigned_url, settings.presign_expiry_s, settings.public_base_url)


def job_active(job_id: str, status: JobStatus) -> ProblemError:
    return ProblemError(
        409,
        "Conflict",
        f"job {job_id!r} is {status.value}: only a finished job (succeeded, failed or canceled) can be deleted; "
        "cancel it first",
        type_=ProblemType.conflict,
    )


def state_event_id(status: JobStatus, attempts: int, progress: Progress | None) -> str:
    """An event's `id`: the job's state it brings the client to (status, delivery, stage and step), so
    a stream resumed with `Last-Event-ID` can leave out the one state the client already holds."""
    where = f"{progress.stage}.{progress.step}" if progress is not None else "-"
    return f"{status.value}.{attempts}.{where}"


async def get_job_handler(store: StoreDep, storage: StorageDep, queue: QueueDep, settings: SettingsDep) -> JobHandler:
    return JobHandler(store, storage, queue, settings)


JobHandlerDep = Annotated[JobHandler, Depends(get_job_handler)]
