"""Every job-state operation as an `Op` or a `Flow` (`jobstate.steps`): the Redis calls to make and
how to read their replies.

Both stores (`JobStore`, sync, for workers; `AsyncJobStore`, for the API) run the same ops: an op is
one round trip, a script (`jobstate.scripts`) or one command, plus a pure function decoding its
reply, so every state change is atomic. A state change whose script needs keys named after the job's
tenant and model first reads them (`job_keys`; neither ever changes); one that queues a task pushes
it onto the broker in a second step (`jobstate.dispatch`).
"""

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from api_schemas import JobStatus, LivePreview, Problem
from jobstate import dispatch
from jobstate.errors import IdempotencyConflict, RateLimited, TooManyActiveJobs
from jobstate.records import AnchorRecord, AnchorVersion, AssetRecord, JobRecord, StoredResult
from jobstate.redis_keys import (
    SHARDS,
    STEP_BUCKETS,
    anchor_index,
    anchor_record_key,
    asset_index,
    asset_record_key,
    bucket_name,
    dispatch_key,
    duration_stats,
    gpu_memory_key,
    idempotency_key,
    job_record_key,
    job_shard,
    lease_key,
    model_running_key,
    no_key,
    rate_limit_key,
    running_jobs_key,
    status_stats_key,
    step_stats,
    tenant_index,
    tenant_shard,
    warm_key,
)
from jobstate.steps import Flow, Op, raw, text
from jobstate.task_message import TaskMessage

TERMINAL = tuple(s.value for s in JobStatus if s.is_terminal())
ACTIVE = (JobStatus.queued.value, JobStatus.running.value)


def body_hash(document: Mapping[str, Any]) -> str:
    """Hash of a JSON document that ignores key order and whitespace."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- decoding -------------------------------------------------------------------------------------


_str = text


def decode_hash(raw: Any) -> dict[str, str]:
    """A hash reply as `dict[str, str]`, whether it came as a dict or a flat list, bytes or str."""
    if isinstance(raw, Mapping):
        return {_str(k): _str(v) for k, v in raw.items()}
    items = list(raw or [])
    return {_str(items[i]): _str(items[i + 1]) for i in range(0, len(items), 2)}


def decode_record(raw: Any) -> JobRecord | None:
    h = decode_hash(raw)
    return JobRecord.from_hash(h) if h else None


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    record: JobRecord
    created: bool  # False when an earlier request with the same Idempotency-Key made it


@dataclass(frozen=True)
class Transition:
    """Outcome of a state change: `applied` is False when the job's status did not allow it."""

    applied: bool
    record: JobRecord | None


@dataclass(frozen=True)
class Page:
    records: list[JobRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class AnchorPage:
    records: list[AnchorRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class AssetPage:
    records: list[AssetRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float  # 0 when allowed


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `subject`'s (an API key's hash), refilled at `rate_per_s`, holding `burst`."""

    subject: str
    rate_per_s: float
    burst: int


@dataclass(frozen=True)
class ProgressAck:
    written: bool  # False unless the job is running
    cancel_requested: bool
    taken_back: bool = False  # the reporting worker no longer holds the job (its lease expired)


@dataclass(frozen=True)
class Reaped:
    """A running job whose worker was lost, as the reaper found it.

    `outcome`: `requeued` (back in its queue), `canceled` (its cancel was asked for: ended), `poison`
    (its runs reached the limit: still running, for the caller to fail) or `no_task` (no kept task
    message: left to the broker's visibility timeout).
    """

    job_id: str
    outcome: str
    attempts: int
    worker: str


T = TypeVar("T")


def _tenant_index(job_id: str, tenant: str, status: JobStatus | None = None) -> str:
    """The tenant's index; for a job that does not exist (tenant '') a stand-in in the job's shard, so that
    the script's keys still share a slot: it answers 'missing' (or 'retry') before touching an index."""
    return tenant_index(tenant, status) if tenant else no_key(job_shard(job_id))


def job_keys(job_id: str, tenant: str, model: str) -> tuple[str, ...]:
    """The keys a script that moves a job is given first (`jobstate.scripts.MOVE_KEYS`, in order): all
    in the job's shard, which is its tenant's (`records.new_job_id`)."""
    shard = job_shard(job_id)
    return (
        job_record_key(job_id),
        lease_key(job_id),
        running_jobs_key(shard),
        model_running_key(model, shard),
        status_stats_key(shard),
        *(_tenant_index(job_id, tenant, s) for s in JobStatus),
        *(duration_stats(s.value, shard) for s in JobStatus if s.is_terminal()),
        dispatch_key(shard),
    )


def _read_job(job_id: str) -> Op[tuple[str, str]]:
    """The job's tenant and model ('' for a job that does not exist)."""
    return Op(
        lambda r: ("" if r[0] is None else _str(r[0]), "" if r[1] is None else _str(r[1])),
        command=("HMGET", job_record_key(job_id), "tenant", "model"),
    )


def _moving(
    job_id: str, script: str, args: Sequence[Any], extra: Callable[[str], Sequence[str]] | None = None
) -> Flow[Any]:
    """Run a script that moves the job, with its keys: read its tenant and model, then run the script
    with `job_keys` (and `extra(tenant)`) and `tenant, *args`. Returns the script's raw reply. A reply
    of 'retry' (the job was created between the two) reads again."""
    for _ in range(3):
        tenant, model = yield _read_job(job_id)
        keys = job_keys(job_id, tenant, model) + tuple(extra(tenant) if extra else ())
        reply = yield Op(raw, script=script, keys=keys, args=(tenant, *args))
        if _str(reply[0]) != "retry":
            return reply
    raise RuntimeError(f"job {job_id} kept changing its tenant while it was being moved")


# --- operations -----------------------------------------------------------------------------------


def create_op(
    job_id: str,
    tenant: str,
    model: str,
    request: Mapping[str, Any],
    *,
    idempotency: tuple[str, str] | None = None,
    idempotency_ttl_s: int = 86400,
    max_active: int = 0,
    task: TaskMessage | None = None,
    rate: RateLimit | None = None,
    retain_s: int = 0,
    now: float | None = None,
) -> Flow[Created]:
    """Create a queued job. `idempotency` is `(key, body_hash)`; a reused key returns the earlier job
    when the body hash matches and raises `IdempotencyConflict` when it does not. With `max_active` > 0
    a tenant that already has that many queued or running jobs gets `TooManyActiveJobs` (a replayed
    request still gets its job). `task` is queued only when the job is created: recorded with the job,
    then pushed onto the broker (`jobstate.dispatch`); a queue key of another type takes the job back
    and raises. With `rate`, the request first takes a token from that bucket, or raises
    `RateLimited`. With `retain_s` > 0 the record (and so its events) expires that many seconds after
    the job reaches a terminal status. The job's id must name its tenant's shard (`records.new_job_id`):
    the script writes the record and the tenant's indexes in one step, so they share a hash tag."""
    if not tenant:  # '' stands for "no record" in the keys of a move (`_tenant_index`)
        raise ValueError(f"job {job_id} needs a tenant")
    shard = job_shard(job_id)
    if shard != tenant_shard(tenant):
        message = f"job id {job_id} names shard {shard}, not tenant {tenant!r}'s: make it with new_job_id(tenant)"
        raise ValueError(message)
    none = no_key(shard)
    ikey, ivalue = none, ""
    if idempotency is not None:
        ikey = idempotency_key(tenant, idempotency[0])
        ivalue = json.dumps({"job_id": job_id, "body_hash": idempotency[1]})
    t = time.time() if now is None else now
    bucket = rate_limit_key(rate.subject, tenant) if rate else none
    keys = (*job_keys(job_id, tenant, model), ikey, bucket, tenant_index(tenant))
    args = (
        tenant,
        job_id,
        model,
        json.dumps(request),
        repr(t),
        ivalue,
        idempotency_ttl_s,
        max_active,
        task.payload if task else "",
        task.list_key if task else "",
        rate.rate_per_s if rate else 0,
        rate.burst if rate else 0,
        int(retain_s),
    )
    for _ in range(3):
        # the job an idempotency key names is read first: the script is given its record's key
        prior = ""
        if idempotency is not None:
            held = yield Op(raw, command=("GET", ikey))
            prior = "" if held is None else json.loads(_str(held))["job_id"]
        prior_key = job_record_key(prior) if prior else none
        reply = yield Op(raw, script="create", keys=(*keys, prior_key), args=(*args, prior))
        outcome = _str(reply[0])
        if outcome != "retry":
            break
    else:
        raise RuntimeError(f"the idempotency key of job {job_id} kept changing while it was created")
    if outcome == "exists":
        raise RuntimeError(f"job id {job_id} already exists")
    if outcome == "limited":
        raise TooManyActiveJobs(int(_str(reply[1])), max_active)
    if outcome == "rate_limited":
        raise RateLimited(int(reply[1]) / 1000)
    if outcome == "existing":
        record = decode_record(reply[2])
        held_by = json.loads(_str(reply[1]))
        if idempotency is None or held_by["body_hash"] != idempotency[1] or record is None:
            raise IdempotencyConflict(held_by["job_id"])
        return Created(record, created=False)
    if task is not None and int(reply[3]) == 1:
        try:
            yield from dispatch.push_new(job_record_key(job_id), task.list_key, task.payload)
        except Exception:
            # the broker refused the task (its queue key holds another type): no job without its task
            yield Op(raw, script="uncreate", keys=(*keys, none), args=(tenant, job_id))
            raise
    # What the script wrote, without reading the job (and its document) back.
    return Created(JobRecord.new(job_id, tenant, model, dict(request), created_at=t), created=True)


def _decode_transition(reply: Any) -> Transition:
    outcome = _str(reply[0])
    return Transition(applied=outcome == "ok", record=decode_record(reply[1]))


def transition_op(
    job_id: str,
    to: JobStatus,
    allowed_from: Sequence[str],
    fields: Mapping[str, str] | None = None,
    now: float | None = None,
    owner: str | None = None,
) -> Flow[Transition]:
    """Move the job to `to` if its status is one of `allowed_from` and, with `owner`, if that worker's
    run still holds it (a worker whose job was taken back changes nothing)."""
    pairs: list[str] = []
    for k, v in (fields or {}).items():
        pairs += [k, v]
    t = time.time() if now is None else now
    args = (job_id, to.value, repr(t), ",".join(allowed_from), owner or "", *pairs)
    return _decode_transition((yield from _moving(job_id, "transition", args)))


def _lease_ms(lease_s: float) -> int:
    if not lease_s > 0:
        raise ValueError(f"a lease must last more than 0 s, got {lease_s!r}")
    return max(1, round(lease_s * 1000))


def mark_running_op(
    job_id: str, worker: str | None = None, lease_s: float = 30.0, now: float | None = None
) -> Flow[Transition]:
    """Claim the job for a run: queued → running, or running → running when no live worker holds it
    (a redelivery after its worker was lost). With `worker`, the run holds a lease of `lease_s` that the
    worker renews (`renew_lease_op`); a job whose lease expired is taken back by `reap_op`. A job held
    by another live worker is refused (`applied` False, status running)."""
    t = time.time() if now is None else now
    lease_ms = _lease_ms(lease_s)
    return _decode_transition((yield from _moving(job_id, "claim", (job_id, repr(t), worker or "", lease_ms))))


def renew_lease_op(job_id: str, worker: str, lease_s: float) -> Op[bool]:
    """Extend `worker`'s lease on its running job; False when it no longer holds the job."""
    return Op(
        lambda raw: int(raw) == 1,
        script="renew_lease",
        keys=(job_record_key(job_id), lease_key(job_id)),
        args=(worker, _lease_ms(lease_s)),
    )


def lease_holder_op(job_id: str) -> Op[str | None]:
    """The worker whose live lease holds the job, or None."""
    return Op(lambda raw: None if raw is None else _str(raw), command=("GET", lease_key(job_id)))


def reap_op(max_deliveries: int, now: float | None = None) -> Flow[list[Reaped]]:
    """Queue again every running job whose worker was lost (see `jobstate.scripts._REAP_JOB`), after
    pushing the tasks a crashed process left in `dispatch` (`jobstate.dispatch.redispatch`).

    Per shard: 1. read its running set; 2. one script finds the jobs whose lease expired; 3. per such
    job, one script moves it and lists its task in `dispatch`; 4. the task goes back on its queue (the
    broker)."""
    if max_deliveries < 1:
        raise ValueError(f"max_deliveries must be at least 1, got {max_deliveries!r}")
    t = time.time() if now is None else now
    out: list[Reaped] = []
    for shard in range(SHARDS):
        yield from dispatch.redispatch(shard, t)
        out += yield from _reap_shard(shard, max_deliveries, t)
    return out


def _reap_shard(shard: int, max_deliveries: int, t: float) -> Flow[list[Reaped]]:
    running = running_jobs_key(shard)
    ids = [_str(i) for i in (yield Op(raw, command=("SMEMBERS", running))) or []]
    if not ids:
        return []
    pairs = [k for i in ids for k in (job_record_key(i), lease_key(i))]
    found = yield Op(raw, script="reap_scan", keys=(running, *pairs), args=ids)
    out: list[Reaped] = []
    for row in found or []:
        job_id, tenant, model = _str(row[0]), _str(row[1]), _str(row[2])
        keys = job_keys(job_id, tenant, model)
        reply = yield Op(raw, script="reap_job", keys=keys, args=(tenant, job_id, repr(t), max_deliveries))
        outcome, task, queue = _str(reply[0]), _str(reply[3]), _str(reply[4])
        if outcome in ("alive", "stale", "retry"):
            continue
        if outcome == "requeued":
            yield from dispatch.requeue(job_record_key(job_id), queue, task)
        elif outcome == "canceled" and task:
            yield from dispatch.drop_unacked(task)
        out.append(Reaped(job_id, outcome, int(reply[1]), _str(reply[2])))
    return out


def succeed_op(job_id: str, result: StoredResult, owner: str | None = None) -> Flow[Transition]:
    return transition_op(job_id, JobStatus.succeeded, ACTIVE, {"result": result.model_dump_json()}, owner=owner)


def fail_op(job_id: str, error: Problem, owner: str | None = None) -> Flow[Transition]:
    return transition_op(job_id, JobStatus.failed, ACTIVE, {"error": error.model_dump_json()}, owner=owner)


def fail_lost_op(job_id: str, error: Problem, worker: str) -> Flow[Transition]:
    """Fail a running job that `worker` held when it was lost (a poison job found by the reaper);
    refused if the job moved on meanwhile."""
    fields = {"error": error.model_dump_json()}
    return transition_op(job_id, JobStatus.failed, (JobStatus.running.value,), fields, owner=worker)


def mark_canceled_op(job_id: str, owner: str | None = None) -> Flow[Transition]:
    return transition_op(job_id, JobStatus.canceled, ACTIVE, owner=owner)


def requeue_op(job_id: str, owner: str | None = None) -> Flow[Transition]:
    """Running → queued: a worker shutting down hands the job back (its message goes back to the queue)."""
    return transition_op(job_id, JobStatus.queued, (JobStatus.running.value,), owner=owner)


def rate_limit_op(subject: str, tenant: str, rate_per_s: float, burst: int, cost: int = 1) -> Op[RateDecision]:
    """Take `cost` tokens from `subject`'s bucket (refilled at `rate_per_s`, holding at most `burst`);
    the bucket is in `tenant`'s shard, where a submission's create script takes its token."""

    def decode(raw: Any) -> RateDecision:
        allowed = int(raw[0]) == 1
        return RateDecision(allowed, 0.0 if allowed else int(raw[1]) / 1000)

    return Op(decode, script="rate_limit", keys=(rate_limit_key(subject, tenant),), args=(rate_per_s, burst, cost))


def request_cancel_op(job_id: str, now: float | None = None) -> Flow[tuple[str, JobRecord | None]]:
    """`('canceled' | 'requested' | 'terminal' | 'missing', record)`."""
    t = time.time() if now is None else now
    reply = yield from _moving(job_id, "request_cancel", (job_id, repr(t)))
    if _str(reply[2]):
        # canceled with its worker lost: its delivery need not come back
        yield from dispatch.drop_unacked(_str(reply[2]))
    return _str(reply[0]), decode_record(reply[1])


def progress_op(
    job_id: str, stage: str, step: int, total: int, now: float | None = None, owner: str | None = None
) -> Op[ProgressAck]:
    """Record a running job's progress; with `owner`, only while that worker's run holds the job."""

    def decode(raw: Any) -> ProgressAck:
        return ProgressAck(written=int(raw[0]) == 1, cancel_requested=int(raw[1]) == 1, taken_back=int(raw[2]) == 1)

    t = time.time() if now is None else now
    return Op(
        decode,
        script="progress",
        keys=(job_record_key(job_id),),
        args=(stage, int(step), int(total), repr(t), owner or ""),
    )


def preview_op(job_id: str, preview: LivePreview, owner: str | None = None) -> Op[bool]:
    """Keep a running job's latest live preview and publish it as a `preview` event; with `owner`, only
    while that worker's run holds the job. True when written."""
    event = json.dumps({"type": "preview", **preview.model_dump(mode="json")})
    return Op(
        lambda raw: int(raw) == 1,
        script="preview",
        keys=(job_record_key(job_id),),
        args=(preview.model_dump_json(), event, owner or ""),
    )


def get_any_op(job_id: str) -> Op[JobRecord | None]:
    """A job whoever owns it (workers; the service always goes through `get_op`)."""
    return Op(decode_record, command=("HGETALL", job_record_key(job_id)))


def get_op(tenant: str, job_id: str) -> Op[JobRecord | None]:
    """A job of this tenant; another tenant's job is None, exactly like a missing one."""

    def decode(raw: Any) -> JobRecord | None:
        record = decode_record(raw)
        return record if record is not None and record.tenant == tenant else None

    return Op(decode, command=("HGETALL", job_record_key(job_id)))


def is_cancel_requested_op(job_id: str) -> Op[bool]:
    return Op(lambda raw: raw is not None and _str(raw) == "1", command=("HGET", job_record_key(job_id), "cancel"))


def _page_ids(index: str, cursor: str | None, count: int) -> Op[list[str]]:
    """Up to `count` ids of a lexically ordered index (score 0), newest first, after `cursor`."""
    top = "+" if not cursor else f"({cursor}"
    return Op(lambda r: [_str(i) for i in r or []], command=("ZREVRANGEBYLEX", index, top, "-", "LIMIT", 0, count))


def list_op(
    tenant: str,
    *,
    cursor: str | None = None,
    limit: int = 20,
    status: JobStatus | None = None,
    keep: Callable[[JobRecord], bool] | None = None,
) -> Flow[Page]:
    """One page newest first; `cursor` is the `next_cursor` of the previous page. With `keep`, only the
    records it keeps are listed. A page holds `limit` records whenever more follow: the index is read
    on past records that expired (they leave it as they are met) or that `keep` leaves out."""
    index = tenant_index(tenant, status)
    kept: list[JobRecord] = []
    after = cursor
    while True:
        ids = yield _page_ids(index, after, limit + 1)
        if not ids:
            return Page(kept, next_cursor=None)
        rows = yield Op(raw, script="list_records", keys=(index, *(job_record_key(i) for i in ids)), args=ids)
        for pair in rows:
            record = decode_record(pair[1])
            if record is None or (keep is not None and not keep(record)):
                continue
            if len(kept) == limit:  # one more than the page: the page ends at the last one kept
                return Page(kept, next_cursor=kept[-1].id)
            kept.append(record)
        if len(ids) <= limit:
            return Page(kept, next_cursor=None)
        after = _str(rows[-1][0])


def put_asset_op(asset: AssetRecord) -> Op[None]:
    """Store an asset's record and list it in its tenant's index."""
    return Op(
        lambda raw: None,
        script="asset_put",
        keys=(asset_record_key(asset.tenant, asset.id), asset_index(asset.tenant)),
        args=(asset.model_dump_json(), asset.id),
    )


def list_assets_op(tenant: str, *, cursor: str | None = None, limit: int = 20) -> Flow[AssetPage]:
    """One page of the tenant's assets, newest first; `cursor` is the previous page's `next_cursor`."""
    ids = yield _page_ids(asset_index(tenant), cursor, limit + 1)
    if not ids:
        return AssetPage([], next_cursor=None)
    # the records have the tenant's hash tag, as its index: one slot
    bodies = yield Op(raw, command=("MGET", *(asset_record_key(tenant, i) for i in ids)))
    more = len(ids) > limit
    records = [AssetRecord.model_validate_json(_str(b)) for b in bodies[:limit] if b]
    return AssetPage(records, next_cursor=ids[limit - 1] if more else None)


def get_asset_op(tenant: str, asset_id: str) -> Op[AssetRecord | None]:
    def decode(raw: Any) -> AssetRecord | None:
        return None if raw is None else AssetRecord.model_validate_json(_str(raw))

    return Op(decode, command=("GET", asset_record_key(tenant, asset_id)))


def put_anchor_op(tenant: str, anchor_id: str, version: AnchorVersion, *, new: bool) -> Op[int]:
    """Store the next version of an anchor set (version 1 of a new one when `new`); the version
    number written, or 0 when the anchor set of a new version does not exist."""
    return Op(
        lambda raw: int(raw),
        script="anchor_put",
        keys=(anchor_record_key(tenant, anchor_id), anchor_index(tenant)),
        args=(anchor_id, tenant, version.model_dump_json(), "1" if new else "0"),
    )


def _decode_anchor(anchor_id: str, raw: Any) -> AnchorRecord | None:
    if not raw or not _str(raw[2]):
        return None
    body = AnchorVersion.model_validate_json(_str(raw[2]))
    return AnchorRecord(id=anchor_id, latest=int(raw[0]), version=int(raw[1]), body=body)


def get_anchor_op(tenant: str, anchor_id: str, version: int | None = None) -> Op[AnchorRecord | None]:
    """The tenant's anchor set at `version` (the latest when None); None when it or the version does
    not exist (another tenant's anchor set does not exist under this tenant's keys)."""
    return Op(
        lambda raw: _decode_anchor(anchor_id, raw),
        script="anchor_get",
        keys=(anchor_record_key(tenant, anchor_id),),
        args=("" if version is None else str(version),),
    )


def list_anchors_op(tenant: str, *, cursor: str | None = None, limit: int = 20) -> Flow[AnchorPage]:
    """One page of the tenant's anchor sets at their latest versions, newest first."""
    ids = yield _page_ids(anchor_index(tenant), cursor, limit + 1)
    if not ids:
        return AnchorPage([], next_cursor=None)
    rows = yield Op(raw, script="anchor_records", keys=tuple(anchor_record_key(tenant, i) for i in ids))
    more = len(ids) > limit
    pairs = list(zip(ids, rows, strict=True))[:limit]
    records = [r for r in (_decode_anchor(i, row) for i, row in pairs) if r is not None]
    return AnchorPage(records, next_cursor=ids[limit - 1] if more else None)


def delete_anchor_op(tenant: str, anchor_id: str) -> Op[bool]:
    """Remove an anchor set and every version of it; False when there was none."""
    return Op(
        lambda raw: int(raw) > 0,
        script="anchor_delete",
        keys=(anchor_record_key(tenant, anchor_id), anchor_index(tenant)),
        args=(anchor_id,),
    )


def heartbeat_op(model: str, worker: str, ttl_s: float = 60.0) -> Op[None]:
    return Op(lambda raw: None, command=("ZADD", warm_key(model), repr(time.time() + ttl_s), worker))


def warm_workers_op(model: str) -> Op[list[str]]:
    return Op(
        lambda raw: sorted(_str(w) for w in raw or []),
        command=("ZRANGEBYSCORE", warm_key(model), repr(time.time()), "+inf"),
    )


def each_shard(command: str, key_of: Callable[[int], str]) -> Flow[list[Any]]:
    """`command` on each shard's key (`key_of(shard)`): the raw replies, in shard order."""
    replies = []
    for shard in range(SHARDS):
        replies.append((yield Op(raw, command=(command, key_of(shard)))))
    return replies


def _summed(key_of: Callable[[int], str]) -> Flow[dict[str, float]]:
    """Field-by-field sums of each shard's hash at `key_of(shard)`."""
    total: dict[str, float] = {}
    for reply in (yield from each_shard("HGETALL", key_of)):
        for field, value in decode_hash(reply).items():
            total[field] = total.get(field, 0.0) + float(value)
    return total


def status_counts_op() -> Flow[dict[str, int]]:
    """Jobs per status, over every shard."""
    counts = yield from _summed(status_stats_key)
    return {s.value: int(counts.get(s.value, 0)) for s in JobStatus}


def duration_stats_op(status: str) -> Flow[dict[str, float]]:
    """`{"sum", "count", "le:<bound>"...}` of run times of jobs that ended in `status`, over every shard."""
    return (yield from _summed(lambda shard: duration_stats(status, shard)))


def queue_positions_op(job_ids: Sequence[str]) -> Flow[list[int | None]]:
    """Each job's place in its model's queue (0 = the next delivered); None where it is not waiting there:
    the jobs' fields from job state, then each queue's positions from the broker."""
    rows: list[Any] = [None] * len(job_ids)
    by_shard: dict[int, list[int]] = {}
    for i, job_id in enumerate(job_ids):
        by_shard.setdefault(job_shard(job_id), []).append(i)
    for places in by_shard.values():  # one script per shard: its keys share a slot
        fields = yield Op(raw, script="queue_fields", keys=tuple(job_record_key(job_ids[i]) for i in places))
        for i, row in zip(places, fields, strict=True):
            rows[i] = row
    out: list[int | None] = [None] * len(job_ids)
    waiting: dict[str, list[tuple[int, str, str]]] = {}
    for i, row in enumerate(rows):
        status, queue, task, ident = (_str(v) for v in row)
        if status == JobStatus.queued.value and queue and task:
            waiting.setdefault(queue, []).append((i, task, ident))
    for queue, jobs in waiting.items():
        args = [v for _, task, ident in jobs for v in (task, ident)]
        places = yield Op(raw, script="queue_positions", keys=(queue,), args=args, broker=True)
        for (i, _, _), place in zip(jobs, places, strict=True):
            out[i] = None if int(place) < 0 else int(place)
    return out


def delete_op(job_id: str) -> Flow[tuple[str, JobStatus | None]]:
    """Remove a finished job's record: `("deleted", status)`, `("active", status)` for a job still queued or
    running (left alone), or `("missing", None)`."""
    reply = yield from _moving(job_id, "delete", (job_id,), extra=lambda tenant: (_tenant_index(job_id, tenant),))
    outcome, status = _str(reply[0]), _str(reply[1])
    return outcome, JobStatus(status) if status else None


def observe_step_op(model: str, seconds: float) -> Op[None]:
    """Count one denoising step of `seconds` in the model's step-time histogram."""
    bounds = [part for le in STEP_BUCKETS for part in (bucket_name(le), repr(le))]
    return Op(lambda raw: None, script="observe", keys=(step_stats(model),), args=(repr(float(seconds)), *bounds))


def step_stats_op(model: str) -> Op[dict[str, float]]:
    """`{"sum", "count", "le:<bound>"...}` of the model's seconds per denoising step."""
    return Op(lambda raw: {k: float(v) for k, v in decode_hash(raw).items()}, command=("HGETALL", step_stats(model)))


def report_gpu_memory_op(model: str, worker: str, peak_bytes: int, now: float | None = None) -> Op[None]:
    """Record the peak GPU memory of `worker`'s last job of `model`."""
    value = json.dumps({"bytes": int(peak_bytes), "at": time.time() if now is None else now})
    return Op(lambda raw: None, command=("HSET", gpu_memory_key(model), worker, value))


def gpu_memory_op(model: str, newer_than: float) -> Op[dict[str, int]]:
    """Worker → peak GPU memory of its last job of `model`, for reports made after `newer_than`."""

    def decode(raw: Any) -> dict[str, int]:
        reports = {worker: json.loads(value) for worker, value in decode_hash(raw).items()}
        return {worker: int(r["bytes"]) for worker, r in reports.items() if float(r["at"]) > newer_than}

    return Op(decode, command=("HGETALL", gpu_memory_key(model)))


def running_count_op(model: str) -> Flow[int]:
    """How many of the model's jobs are running (`model:<name>:running`, over every shard)."""
    replies = yield from each_shard("SCARD", lambda shard: model_running_key(model, shard))
    return sum(int(r or 0) for r in replies)


def queue_depth_op(queue: str) -> Op[int]:
    """Messages waiting in a Celery queue on the Redis broker (a list named after the queue)."""
    return Op(lambda raw: int(raw or 0), command=("LLEN", queue))


def running_jobs_op(model: str) -> Flow[list[str]]:
    """The ids of the model's running jobs (`model:<name>:running` in every shard, kept by every move
    into and out of `running`); their number plus the model's queue length is what its workers have to do."""
    replies = yield from each_shard("SMEMBERS", lambda shard: model_running_key(model, shard))
    return sorted(_str(j) for members in replies for j in members or [])


def ping_op() -> Op[bool]:
    return Op(lambda raw: bool(raw), command=("PING",))
