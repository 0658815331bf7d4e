"""Comparison records in Redis and their operations (run by `JobStore.run` / `AsyncJobStore.run`).

A comparison is written once when it is accepted (its children's ids are fixed then) and changes
only through scripts: a cancel (`comparison_cancel`), the composition queued once with its task
(`comparison_compose`) and finished once (`comparison_finish`). Its status is not stored: it is read
from its children's records whenever it is answered (`comparison_status`), so it can never disagree
with them.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api_schemas import JobStatus, Problem
from jobstate import dispatch
from jobstate.operations import decode_hash, each_shard
from jobstate.queues import COMPOSE_COMPARISON_TASK, CPU_QUEUE
from jobstate.records import JobRecord, StoredArtifact, _time_ordered_id
from jobstate.redis_keys import active_comparisons_key, comparison_record_key, dispatch_key, tenant_shard
from jobstate.steps import Flow, Op, raw, text
from jobstate.store import AsyncJobStore
from jobstate.task_message import TaskMessage, task_message

COMPARISON_ID_PATTERN = r"^cmp_[0-9a-f]{28}$"
# What a comparison's composition stores, by name: `comparisons/<tenant>/<id>/<file>`.
COMPARISON_FILES = {"video": "video.mp4", "contact_sheet": "contact_sheet.png", "table": "table.json"}


def new_comparison_id(now: float | None = None) -> str:
    return _time_ordered_id("cmp", now)


@dataclass(frozen=True)
class Child:
    model: str
    job_id: str


@dataclass(frozen=True)
class ComparisonRecord:
    """A comparison as Redis holds it."""

    id: str
    tenant: str
    request: dict[str, Any]
    seed: int
    children: list[Child]
    created_at: datetime
    cancel: bool = False
    compose: str = ""  # "", "queued", "succeeded", "failed"
    result: dict[str, Any] | None = None  # {"video": StoredArtifact, "contact_sheet": ..., "table": [...]}
    error: Problem | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> "ComparisonRecord":
        return cls(
            id=h["id"],
            tenant=h["tenant"],
            request=json.loads(h["request"]),
            seed=int(h["seed"]),
            children=[Child(c["model"], c["job_id"]) for c in json.loads(h["children"])],
            created_at=datetime.fromtimestamp(float(h["created_at"]), UTC),
            cancel=h.get("cancel") == "1",
            compose=h.get("compose", ""),
            result=json.loads(h["result"]) if h.get("result") else None,
            error=Problem.model_validate_json(h["error"]) if h.get("error") else None,
            finished_at=datetime.fromtimestamp(float(h["finished_at"]), UTC) if h.get("finished_at") else None,
        )

    def stored_files(self) -> dict[str, StoredArtifact]:
        """The composition's stored files by name (`video`, `contact_sheet`), once it succeeded."""
        if self.result is None:
            return {}
        return {name: StoredArtifact.model_validate(self.result[name]) for name in ("video", "contact_sheet")}


def comparison_status(record: ComparisonRecord, children: Sequence[JobRecord | None]) -> JobStatus:
    """The comparison's status from its children's records (None: a child that was not created, or was deleted)."""
    statuses = [c.status if c is not None else JobStatus.failed for c in children]
    if not all(s.is_terminal() for s in statuses):
        if record.cancel or any(s is not JobStatus.queued for s in statuses):
            return JobStatus.running
        return JobStatus.queued
    if record.compose == "succeeded":
        return JobStatus.succeeded
    if record.compose == "failed":
        return JobStatus.failed
    if record.compose == "queued":
        return JobStatus.running
    if record.cancel:
        return JobStatus.canceled
    if JobStatus.succeeded not in statuses:
        return JobStatus.failed
    return JobStatus.running  # every child is done: the composition is about to be queued


def composition_ready(record: ComparisonRecord, children: Sequence[JobRecord | None]) -> bool:
    """Whether the side-by-side should be queued now: every child terminal, one succeeded, no cancel."""
    if record.compose or record.cancel:
        return False
    if any(c is None or not c.status.is_terminal() for c in children):
        return False
    return any(c is not None and c.status is JobStatus.succeeded for c in children)


def compose_task(comparison_id: str, tenant: str) -> TaskMessage:
    """The composition's task on the CPU queue; its Celery id is derived from the comparison's."""
    kwargs = {"comparison_id": comparison_id, "tenant": tenant}
    return task_message(COMPOSE_COMPARISON_TASK, kwargs, CPU_QUEUE, task_id=f"{comparison_id}.compose")


# --- operations -----------------------------------------------------------------------------------


def put_comparison_op(record: ComparisonRecord, retain_s: int = 0) -> Op[None]:
    """Write a new comparison (its children's ids included, before they are created) and list it as
    under way (its shard's `comparisons:active`), in one step. With `retain_s` > 0 the record expires that many
    seconds after the comparison ends (its composition finished, or it settled without one)."""
    children = json.dumps([{"model": c.model, "job_id": c.job_id} for c in record.children])
    fields = {
        "id": record.id,
        "tenant": record.tenant,
        "request": json.dumps(record.request, separators=(",", ":")),
        "seed": str(record.seed),
        "children": children,
        "created_at": repr(record.created_at.timestamp()),
        "cancel": "0",
        "compose": "",
        "retain_s": str(int(retain_s)),
    }
    flat = [item for pair in fields.items() for item in pair]
    return Op(
        lambda raw: None,
        script="comparison_put",
        keys=(comparison_record_key(record.tenant, record.id), active_comparisons_key(tenant_shard(record.tenant))),
        args=(_member(record.tenant, record.id), *flat),
    )


def _member(tenant: str, comparison_id: str) -> str:
    return f"{tenant}/{comparison_id}"


def active_comparisons_op() -> Flow[list[tuple[str, str]]]:
    """`(tenant, id)` of every comparison whose side-by-side may still have to be queued, over every shard."""
    replies = yield from each_shard("SMEMBERS", active_comparisons_key)
    members = [text(m) for reply in replies for m in reply or []]
    return [(tenant, ident) for tenant, _, ident in (m.rpartition("/") for m in members)]


def settled_op(tenant: str, comparison_id: str) -> Op[None]:
    """The comparison needs no more looking after (its composition is queued, or it never will be); a
    comparison that ended starts its retention."""
    return Op(
        lambda raw: None,
        script="comparison_settled",
        keys=(comparison_record_key(tenant, comparison_id), active_comparisons_key(tenant_shard(tenant))),
        args=(_member(tenant, comparison_id),),
    )


async def queue_ready_compositions(store: AsyncJobStore) -> int:
    """Queue the side-by-side of every comparison under way whose children are all terminal, and stop
    looking after those that are settled; returns how many it queued. Safe to run in every API process
    at once: the queueing is `compose_comparison_op`, once per comparison."""
    queued = 0
    for tenant, ident in await store.run(active_comparisons_op()):
        record = await store.run(get_comparison_op(tenant, ident))
        if record is None:
            await store.run(settled_op(tenant, ident))
            continue
        children = [await store.get(tenant, c.job_id) for c in record.children]
        if composition_ready(record, children):
            queued += await store.run(compose_comparison_op(tenant, ident))
            record = await store.run(get_comparison_op(tenant, ident)) or record
        if record.compose or comparison_status(record, children).is_terminal():
            await store.run(settled_op(tenant, ident))
    return queued


def get_comparison_op(tenant: str, comparison_id: str) -> Op[ComparisonRecord | None]:
    """The tenant's comparison; None when there is none (another tenant's has other keys)."""

    def decode(raw: Any) -> ComparisonRecord | None:
        h = decode_hash(raw)
        return ComparisonRecord.from_hash(h) if h else None

    return Op(decode, command=("HGETALL", comparison_record_key(tenant, comparison_id)))


def delete_comparison_op(tenant: str, comparison_id: str) -> Op[None]:
    return Op(lambda raw: None, command=("DEL", comparison_record_key(tenant, comparison_id)))


def cancel_comparison_op(tenant: str, comparison_id: str) -> Op[bool]:
    """Mark the comparison canceled (unless its composition was queued already); False when none."""
    return Op(
        lambda raw: bool(int(raw)), script="comparison_cancel", keys=(comparison_record_key(tenant, comparison_id),)
    )


def compose_comparison_op(tenant: str, comparison_id: str, now: float | None = None) -> Flow[bool]:
    """Queue the composition once: recorded with its task in one step, then the task pushed onto the
    CPU queue (`jobstate.dispatch`); True when this call queued it."""
    task = compose_task(comparison_id, tenant)
    key = comparison_record_key(tenant, comparison_id)
    t = time.time() if now is None else now
    args = (task.payload, task.list_key, repr(t))
    queued = yield Op(raw, script="comparison_compose", keys=(key, dispatch_key(tenant_shard(tenant))), args=args)
    if not int(queued):
        return False
    yield from dispatch.push_new(key, task.list_key, task.payload)
    return True


def finish_comparison_op(
    tenant: str,
    comparison_id: str,
    *,
    result: dict[str, Any] | None = None,
    error: Problem | None = None,
    now: float | None = None,
) -> Op[bool]:
    """Record the composition's outcome, once: its `result` (stored files and table) or its `error`."""
    if (result is None) == (error is None):
        raise ValueError("give the composition's result or its error")
    state, name = ("succeeded", "result") if result is not None else ("failed", "error")
    value = json.dumps(result, separators=(",", ":")) if result is not None else error.model_dump_json()  # type: ignore[union-attr]
    return Op(
        lambda raw: bool(int(raw)),
        script="comparison_finish",
        keys=(comparison_record_key(tenant, comparison_id),),
        args=(state, name, value, repr(time.time() if now is None else now)),
    )


__all__ = [
    "COMPARISON_FILES",
    "COMPARISON_ID_PATTERN",
    "Child",
    "ComparisonRecord",
    "cancel_comparison_op",
    "comparison_status",
    "compose_comparison_op",
    "composition_ready",
    "delete_comparison_op",
    "finish_comparison_op",
    "get_comparison_op",
    "new_comparison_id",
    "put_comparison_op",
    "queue_ready_compositions",
]
