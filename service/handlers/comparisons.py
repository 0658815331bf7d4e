"""Comparisons: one job on several models, for `service.routes.comparisons`.

A comparison is recorded with its children's ids before any child exists, so it is never lost: a
child that could not be created reads as failed. Its status is computed from its children's records
each time it is answered, and the answer that first finds every child terminal (one succeeded, no
cancel) queues the side-by-side on the CPU queue, once, in the same Redis step that marks it queued.
"""

import logging
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends

from api_schemas import FieldError, JobRequest, JobStatus
from api_schemas.comparisons import (
    ComparisonChild,
    ComparisonRequest,
    ComparisonResource,
    ComparisonResult,
    ComparisonRow,
)
from api_schemas.problems import ProblemType
from jobstate.comparisons import (
    Child,
    ComparisonRecord,
    cancel_comparison_op,
    comparison_status,
    compose_comparison_op,
    composition_ready,
    delete_comparison_op,
    get_comparison_op,
    new_comparison_id,
    put_comparison_op,
)
from jobstate.records import JobRecord, Presigner, artifact, new_job_id, urls_expire
from jobstate.store import AsyncJobStore, failure
from service.checks import check_document, text_encoder_errors
from service.deps import QueueDep, SettingsDep, StorageDep, StoreDep
from service.errors import ProblemError, invalid, not_found
from service.handlers.anchors import apply_anchor
from service.handlers.jobs import presigner
from service.queue import JobQueue, job_task
from service.settings import Settings
from storage.base import Storage

log = logging.getLogger(__name__)


class ComparisonHandler:
    """The comparison routes' one collaborator, over the clients a request is injected with."""

    def __init__(self, store: AsyncJobStore, storage: Storage, queue: JobQueue, settings: Settings) -> None:
        self.store = store
        self.storage = storage
        self.queue = queue
        self.settings = settings

    async def submit(self, body: ComparisonRequest, tenant: str) -> ComparisonResource:
        # 1. the models must be this deployment's
        unknown = [
            FieldError(
                field=f"models[{i}]",
                rule="known_model",
                message=f"unknown model {name!r}; known: {', '.join(self.settings.models)}",
            )
            for i, name in enumerate(body.models)
            if name not in self.settings.models
        ]
        if unknown:
            raise invalid(unknown, title="Invalid comparison")
        # 2. the job as each child runs it: anchor merged, checked, one seed for every child
        job = await apply_anchor(body.job, tenant, self.store)
        await self._check_job(job, body.models[0], tenant)
        no_text = [
            FieldError(
                field=f"models[{i}]",
                rule="text_encoder_missing",
                message=f"model {name!r} has no text encoder for the job's `text` directions",
            )
            for i, name in enumerate(body.models)
            if text_encoder_errors(job.directions, name, self.settings)
        ]
        if no_text:
            raise invalid(no_text, title="Invalid comparison")
        seed = job.seed if job.seed is not None else secrets.randbelow(2**32)
        job = job.model_copy(update={"seed": seed, "model": None})
        # 3. record the comparison with its children's ids, then create each child on its model's queue
        record = ComparisonRecord(
            id=new_comparison_id(),
            tenant=tenant,
            request={"models": body.models, "job": job.dump()},
            seed=seed,
            children=[Child(model, new_job_id(tenant)) for model in body.models],
            created_at=datetime.now(UTC),
        )
        await self.store.run(put_comparison_op(record, retain_s=self.settings.retention_days * 86400))
        records = await self._create_children(record, job)
        return self.resource(record, records)

    async def _check_job(self, job: JobRequest, model: str, tenant: str) -> None:
        """`check_document` of the job (as run by the first model), its fields named under `job.`."""
        try:
            await check_document(
                job.model_copy(update={"model": model}), tenant, self.store, self.settings, self.storage
            )
        except ProblemError as exc:
            errors = [
                e.model_copy(update={"field": f"job.{e.field}" if e.field else "job"}) for e in exc.problem.errors
            ]
            if not errors:
                raise
            raise invalid(errors, title="Invalid comparison") from None

    async def _create_children(self, record: ComparisonRecord, job: JobRequest) -> list[JobRecord | None]:
        """Create every child; a refusal (the tenant's active-job cap) cancels those already made and
        removes the comparison before it is raised."""
        created: list[JobRecord | None] = []
        try:
            for child in record.children:
                document = job.model_copy(update={"model": child.model})
                outcome = await self.store.create(
                    child.job_id,
                    record.tenant,
                    child.model,
                    document.dump(),
                    max_active=self.settings.max_active_jobs_per_tenant,
                    task=job_task(child.job_id, record.tenant, child.model),
                    retain_s=self.settings.retention_days * 86400,
                )
                created.append(outcome.record)
        except Exception:
            for made in created:
                if made is not None:
                    await self.store.request_cancel(made.id)
            await self.store.run(delete_comparison_op(record.tenant, record.id))
            raise
        return created

    async def own(self, tenant: str, comparison_id: str) -> ComparisonRecord:
        record = await self.store.run(get_comparison_op(tenant, comparison_id))
        if record is None:
            raise not_found("comparison", comparison_id)
        return record

    async def children(self, record: ComparisonRecord) -> list[JobRecord | None]:
        return [await self.store.get(record.tenant, c.job_id) for c in record.children]

    async def get(self, tenant: str, comparison_id: str) -> ComparisonResource:
        record = await self.own(tenant, comparison_id)
        children = await self.children(record)
        if composition_ready(record, children):
            # Every child is done: queue the side-by-side (once, whichever request gets here first).
            await self.store.run(compose_comparison_op(tenant, comparison_id))
            record = await self.own(tenant, comparison_id)
        return self.resource(record, children)

    async def cancel(self, tenant: str, comparison_id: str) -> ComparisonResource:
        """Cancel every child still queued or running (a queued one at once, a running one within a step);
        409 for a comparison that already succeeded or failed, as for a job."""
        record = await self.own(tenant, comparison_id)
        status = comparison_status(record, await self.children(record))
        if status in (JobStatus.succeeded, JobStatus.failed):
            raise ProblemError(
                409, "Conflict", f"comparison {comparison_id!r} already {status.value}", type_=ProblemType.conflict
            )
        await self.store.run(cancel_comparison_op(tenant, comparison_id))
        for child in record.children:
            outcome, job = await self.store.request_cancel(child.job_id)
            if outcome == "canceled" and job is not None:
                try:
                    await self.queue.enqueue_webhook(job, self.presign)
                except Exception:
                    log.exception("could not queue the webhook of canceled job %s", job.id)
        record = await self.own(tenant, comparison_id)
        return self.resource(record, await self.children(record))

    @property
    def presign(self) -> Presigner:
        return presigner(self.storage, self.settings)

    def resource(self, record: ComparisonRecord, children: list[JobRecord | None]) -> ComparisonResource:
        views = [_child(c.model, c.job_id, job) for c, job in zip(record.children, children, strict=True)]
        status = comparison_status(record, children)
        terminal = sum(v.status.is_terminal() for v in views)
        progress: dict[str, Any] | None = None
        if not status.is_terminal():
            progress = {"children_terminal": terminal, "children": len(views)}
            if record.compose == "queued":
                progress["stage"] = "compose"
        result = None
        if record.compose == "succeeded" and record.result is not None:
            files = record.stored_files()
            presign = self.presign
            expires_at = urls_expire(presign)
            result = ComparisonResult(
                video=artifact(files["video"], presign, expires_at),
                contact_sheet=artifact(files["contact_sheet"], presign, expires_at),
                table=[ComparisonRow.model_validate(row) for row in record.result["table"]],
            )
        return ComparisonResource(
            id=record.id,
            status=status,
            created_at=record.created_at,
            finished_at=record.finished_at if status.is_terminal() else None,
            models=[c.model for c in record.children],
            seed=record.seed,
            request=ComparisonRequest.model_validate(record.request),
            children=views,
            failed=[v for v in views if v.status is JobStatus.failed],
            result=result,
            error=record.error,
            progress=progress,
        )


def _child(model: str, job_id: str, job: JobRecord | None) -> ComparisonChild:
    if job is None:
        problem = failure("Child missing", f"child job {job_id} of model {model!r} was not created, or was deleted")
        return ComparisonChild(model=model, job_id=job_id, status=JobStatus.failed, error=problem)
    return ComparisonChild(model=model, job_id=job_id, status=job.status, progress=job.progress, error=job.error)


async def get_comparison_handler(
    store: StoreDep, storage: StorageDep, queue: QueueDep, settings: SettingsDep
) -> ComparisonHandler:
    return ComparisonHandler(store, storage, queue, settings)


ComparisonHandlerDep = Annotated[ComparisonHandler, Depends(get_comparison_handler)]
