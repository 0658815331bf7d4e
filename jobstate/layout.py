"""Redis key layout, Lua scripts and the (de)serialisation of every job-state operation.

Both stores (`JobStore`, sync, for workers; `AsyncJobStore`, for the API) run the same `Op`s: an op
is the Redis call to make (a script or one command) plus a pure function decoding its reply. Each op
is one round trip, so every state change is atomic: a Lua script checks the current status and
writes in one step, which keeps redelivered tasks and concurrent cancels from racing.

Keys (prefix `vsteer:`):

- `job:<id>` hash: id, tenant, status, model, request (JSON), created_at / started_at / finished_at
  (epoch seconds), stage / step / total / updated_at (progress), result (JSON), error (JSON),
  cancel ("1" when requested), attempts.
- `job:<id>:events` pub/sub channel: `{"type": "progress", "stage", "step", "total"}`,
  `{"type": "status", "status"}`, `{"type": "cancel_requested"}`.
- `tenant:<tenant>:jobs` and `tenant:<tenant>:jobs:<status>` sorted sets of job ids, all with score 0:
  ids sort by creation time, so `ZREVRANGEBYLEX` pages newest first and a cursor (the last id seen)
  stays stable under inserts.
- `idem:<tenant>:<sha256(key)>` string: `{"job_id", "body_hash"}` with a TTL.
- `asset:<tenant>:<id>` string: the asset record (JSON).
- `stats:status` hash: jobs per status; `stats:duration:<status>` hash: histogram of run times.
- `model:<name>:warm` sorted set: worker name → expiry of its last heartbeat.
- `ratelimit:<sha256(api key)>` hash: tokens, ts (a token bucket per API key, expiring when full).
"""

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from api_schemas import JobStatus, Problem
from jobstate.records import AssetRecord, JobRecord, StoredResult
from jobstate.task_message import TaskMessage

PREFIX = "vsteer:"
TERMINAL = tuple(s.value for s in JobStatus if s.is_terminal())
ACTIVE = (JobStatus.queued.value, JobStatus.running.value)
# Upper bounds (seconds) of the job-duration histogram; `+Inf` is implied.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def bucket_name(le: float) -> str:
    """How a histogram bound is named in Redis (`le:<name>`) and in Prometheus."""
    return format(le, "g")


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def events_channel(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:events"


def tenant_index(tenant: str, status: JobStatus | None = None) -> str:
    base = f"{PREFIX}tenant:{tenant}:jobs"
    return base if status is None else f"{base}:{status.value}"


def idempotency_key(tenant: str, key: str) -> str:
    return f"{PREFIX}idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"


def asset_key(tenant: str, asset_id: str) -> str:
    return f"{PREFIX}asset:{tenant}:{asset_id}"


def rate_limit_key(subject: str) -> str:
    return f"{PREFIX}ratelimit:{subject}"


def warm_key(model: str) -> str:
    return f"{PREFIX}model:{model}:warm"


STATUS_STATS = f"{PREFIX}stats:status"


def duration_stats(status: str) -> str:
    return f"{PREFIX}stats:duration:{status}"


def body_hash(document: Mapping[str, Any]) -> str:
    """Hash of a JSON document that ignores key order and whitespace."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- Lua -------------------------------------------------------------------------------------------
# Scripts build the tenant and stats keys from the prefix; that is fine on one Redis (not a cluster).

_LUA_COMMON = """
local P = ARGV[1]
local function is_terminal(s)
  return s == 'succeeded' or s == 'failed' or s == 'canceled'
end
local BUCKETS = {__BUCKETS__}
local BUCKET_NAMES = {__BUCKET_NAMES__}
-- Move job `id` (hash `jk`) from status `from` to `to`, keep the indexes and counters right,
-- stamp the times and tell subscribers. Returns nothing; the caller checked `from` is allowed.
local function move(jk, id, from, to, now)
  local tenant = redis.call('HGET', jk, 'tenant')
  if from ~= to then
    local base = P .. 'tenant:' .. tenant .. ':jobs:'
    redis.call('ZREM', base .. from, id)
    redis.call('ZADD', base .. to, 0, id)
    redis.call('HINCRBY', P .. 'stats:status', from, -1)
    redis.call('HINCRBY', P .. 'stats:status', to, 1)
  end
  redis.call('HSET', jk, 'status', to)
  if to == 'queued' and from == 'running' then
    -- handed back by a worker that is shutting down: that delivery did not crash, so it does not count
    redis.call('HINCRBY', jk, 'attempts', -1)
    redis.call('HDEL', jk, 'stage', 'step', 'total')
  end
  if to == 'running' then
    redis.call('HSET', jk, 'started_at', now)
    redis.call('HINCRBY', jk, 'attempts', 1)
  end
  if is_terminal(to) then
    redis.call('HSET', jk, 'finished_at', now)
    local started = redis.call('HGET', jk, 'started_at') or redis.call('HGET', jk, 'created_at')
    local d = tonumber(now) - tonumber(started)
    local hk = P .. 'stats:duration:' .. to
    redis.call('HINCRBYFLOAT', hk, 'sum', d)
    redis.call('HINCRBY', hk, 'count', 1)
    for i, le in ipairs(BUCKETS) do
      if d <= le then redis.call('HINCRBY', hk, 'le:' .. BUCKET_NAMES[i], 1) end
    end
  end
  redis.call('PUBLISH', jk .. ':events', cjson.encode({type = 'status', status = to}))
end
""".replace("__BUCKETS__", ", ".join(repr(b) for b in DURATION_BUCKETS)).replace(
    "__BUCKET_NAMES__", ", ".join(f"'{bucket_name(b)}'" for b in DURATION_BUCKETS)
)

# A token bucket on Redis's clock, so every API process shares one bucket per key whatever their own
# clocks say. Takes `cost` tokens when there are as many; returns allowed (0/1) and the milliseconds
# until `cost` tokens are there.
_LUA_TOKEN = """
local function take_token(bucket, rate, burst, cost)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  local state = redis.call('HMGET', bucket, 'tokens', 'ts')
  local tokens, ts = tonumber(state[1]), tonumber(state[2])
  if tokens == nil then tokens, ts = burst, now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local allowed = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  end
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', bucket, math.ceil((burst - tokens) / rate * 1000) + 1000)
  local wait = 0
  if allowed == 0 then wait = math.ceil((cost - tokens) / rate * 1000) end
  return allowed, wait
end
"""

# KEYS: job hash, idempotency key ('' for none), task queue list ('' for none), rate-limit bucket ('' for none)
# ARGV: prefix, id, tenant, model, request, now, idem value, idem ttl, most active jobs per tenant (0: no cap),
#       task message (pushed onto the queue list only when the job is created), bucket's rate, bucket's burst
_CREATE = (
    _LUA_COMMON
    + _LUA_TOKEN
    + """
local jk, ik, qk, bk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', jk) == 1 then
  -- Job ids are random: this very call already ran (the client retried it after a lost reply).
  if redis.call('HGET', jk, 'tenant') == ARGV[3] and redis.call('HGET', jk, 'created_at') == ARGV[6] then
    return {'created', '', {}}
  end
  return {'exists', '', {}}
end
if qk ~= '' then
  -- Checked before any write: a script is not rolled back, and a job must never lack its task.
  local kind = redis.call('TYPE', qk)['ok']
  if kind ~= 'none' and kind ~= 'list' then return redis.error_reply('queue key ' .. qk .. ' holds a ' .. kind) end
end
if bk ~= '' then
  -- the request's rate-limit token, taken first as for any request of the key
  local allowed, wait = take_token(bk, tonumber(ARGV[11]), tonumber(ARGV[12]), 1)
  if allowed == 0 then return {'rate_limited', wait, {}} end
end
if ik ~= '' then
  local existing = redis.call('GET', ik)
  if existing then
    local prior = cjson.decode(existing)
    return {'existing', existing, redis.call('HGETALL', P .. 'job:' .. prior['job_id'])}
  end
end
local id, tenant = ARGV[2], ARGV[3]
local cap = tonumber(ARGV[9])
if cap > 0 then
  local base = P .. 'tenant:' .. tenant .. ':jobs:'
  local active = redis.call('ZCARD', base .. 'queued') + redis.call('ZCARD', base .. 'running')
  if active >= cap then return {'limited', tostring(active), {}} end
end
redis.call('HSET', jk, 'id', id, 'tenant', tenant, 'status', 'queued', 'model', ARGV[4],
  'request', ARGV[5], 'created_at', ARGV[6], 'cancel', '0', 'attempts', 0)
redis.call('ZADD', P .. 'tenant:' .. tenant .. ':jobs', 0, id)
redis.call('ZADD', P .. 'tenant:' .. tenant .. ':jobs:queued', 0, id)
redis.call('HINCRBY', P .. 'stats:status', 'queued', 1)
if ik ~= '' then redis.call('SET', ik, ARGV[7], 'EX', tonumber(ARGV[8])) end
if qk ~= '' then redis.call('LPUSH', qk, ARGV[10]) end
return {'created', '', {}}
"""
)

# KEYS: job hash
# ARGV: prefix, id, to status, now, allowed-from (comma separated), then field/value pairs to set
_TRANSITION = (
    _LUA_COMMON
    + """
local jk, id, to, now = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
local from = redis.call('HGET', jk, 'status')
if not from then return {'missing', {}} end
local allowed = false
for s in string.gmatch(ARGV[5], '[^,]+') do
  if s == from then allowed = true end
end
if not allowed then return {'rejected', redis.call('HGETALL', jk)} end
for i = 6, #ARGV, 2 do redis.call('HSET', jk, ARGV[i], ARGV[i + 1]) end
move(jk, id, from, to, now)
return {'ok', redis.call('HGETALL', jk)}
"""
)

# KEYS: job hash. ARGV: prefix, id, now. Queued → canceled at once; running → flag for the worker.
_REQUEST_CANCEL = (
    _LUA_COMMON
    + """
local jk, id, now = KEYS[1], ARGV[2], ARGV[3]
local from = redis.call('HGET', jk, 'status')
if not from then return {'missing', {}} end
if is_terminal(from) then return {'terminal', redis.call('HGETALL', jk)} end
redis.call('HSET', jk, 'cancel', '1')
if from == 'queued' then
  move(jk, id, from, 'canceled', now)
  return {'canceled', redis.call('HGETALL', jk)}
end
redis.call('PUBLISH', jk .. ':events', cjson.encode({type = 'cancel_requested'}))
return {'requested', redis.call('HGETALL', jk)}
"""
)

# KEYS: job hash. ARGV: stage, step, total, now. Returns {written (0/1), cancel requested (0/1)}.
_PROGRESS = """
local jk = KEYS[1]
local st = redis.call('HGET', jk, 'status')
if st ~= 'running' then
  return {0, st and redis.call('HGET', jk, 'cancel') == '1' and 1 or 0}
end
redis.call('HSET', jk, 'stage', ARGV[1], 'step', ARGV[2], 'total', ARGV[3], 'updated_at', ARGV[4])
redis.call('PUBLISH', jk .. ':events', cjson.encode({type = 'progress', stage = ARGV[1],
  step = tonumber(ARGV[2]), total = tonumber(ARGV[3])}))
return {1, redis.call('HGET', jk, 'cancel') == '1' and 1 or 0}
"""

# KEYS: index. ARGV: prefix, cursor ('' for the first page), count. Returns job hashes, newest first.
_LIST = """
local P = ARGV[1]
local max = ARGV[2] == '' and '+' or '(' .. ARGV[2]
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], max, '-', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i, id in ipairs(ids) do out[i] = {id, redis.call('HGETALL', P .. 'job:' .. id)} end
return out
"""

# KEYS: bucket. ARGV: refill rate (tokens per second), burst (bucket size), cost.
# Returns {allowed (0/1), milliseconds until `cost` tokens are there}.
_RATE_LIMIT = (
    _LUA_TOKEN
    + """
local allowed, wait = take_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return {allowed, wait}
"""
)

SCRIPTS: dict[str, str] = {
    "create": _CREATE,
    "rate_limit": _RATE_LIMIT,
    "transition": _TRANSITION,
    "request_cancel": _REQUEST_CANCEL,
    "progress": _PROGRESS,
    "list": _LIST,
}


# --- decoding -------------------------------------------------------------------------------------


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_hash(raw: Any) -> dict[str, str]:
    """A hash reply as `dict[str, str]`, whether it came as a dict or a flat list, bytes or str."""
    if isinstance(raw, Mapping):
        return {_str(k): _str(v) for k, v in raw.items()}
    items = list(raw or [])
    return {_str(items[i]): _str(items[i + 1]) for i in range(0, len(items), 2)}


def decode_record(raw: Any) -> JobRecord | None:
    h = decode_hash(raw)
    return JobRecord.from_hash(h) if h else None


class TooManyActiveJobs(Exception):
    """The tenant already has as many queued and running jobs as it may."""

    def __init__(self, active: int, cap: int) -> None:
        super().__init__(f"the tenant has {active} queued or running jobs, the most it may have is {cap}")
        self.active = active
        self.cap = cap


class IdempotencyConflict(Exception):
    """The idempotency key was used before with another body."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the Idempotency-Key was used for job {job_id} with a different body")
        self.job_id = job_id


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
class RateDecision:
    allowed: bool
    retry_after_s: float  # 0 when allowed


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `subject`'s (an API key's hash), refilled at `rate_per_s`, holding `burst`."""

    subject: str
    rate_per_s: float
    burst: int


class RateLimited(Exception):
    """The bucket had no token for this request."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ProgressAck:
    written: bool  # False unless the job is running
    cancel_requested: bool


T = TypeVar("T")


@dataclass(frozen=True)
class Op(Generic[T]):
    """One round trip: a script (by name in `SCRIPTS`) or one command, and how to read its reply."""

    decode: Callable[[Any], T]
    script: str | None = None
    keys: Sequence[str] = ()
    args: Sequence[Any] = ()
    command: Sequence[Any] = ()


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
    now: float | None = None,
) -> Op[Created]:
    """Create a queued job. `idempotency` is `(key, body_hash)`; a reused key returns the earlier job
    when the body hash matches and raises `IdempotencyConflict` when it does not. With `max_active` > 0
    a tenant that already has that many queued or running jobs gets `TooManyActiveJobs` (a replayed
    request still gets its job). `task` is queued in the same step, only when the job is created. With
    `rate`, the request first takes a token from that bucket, or raises `RateLimited`."""
    ikey, ivalue = "", ""
    if idempotency is not None:
        ikey = idempotency_key(tenant, idempotency[0])
        ivalue = json.dumps({"job_id": job_id, "body_hash": idempotency[1]})

    def decode(raw: Any) -> Created:
        outcome = _str(raw[0])
        if outcome == "exists":
            raise RuntimeError(f"job id {job_id} already exists")
        if outcome == "limited":
            raise TooManyActiveJobs(int(_str(raw[1])), max_active)
        if outcome == "rate_limited":
            raise RateLimited(int(raw[1]) / 1000)
        if outcome == "existing":
            record = decode_record(raw[2])
            prior = json.loads(_str(raw[1]))
            if idempotency is None or prior["body_hash"] != idempotency[1] or record is None:
                raise IdempotencyConflict(prior["job_id"])
            return Created(record, created=False)
        # What the script wrote, without reading the job (and its document) back.
        return Created(JobRecord.new(job_id, tenant, model, dict(request), created_at=t), created=True)

    t = time.time() if now is None else now
    return Op(
        decode,
        script="create",
        keys=(job_key(job_id), ikey, task.list_key if task else "", rate_limit_key(rate.subject) if rate else ""),
        args=(
            PREFIX,
            job_id,
            tenant,
            model,
            json.dumps(request),
            repr(t),
            ivalue,
            idempotency_ttl_s,
            max_active,
            task.payload if task else "",
            rate.rate_per_s if rate else 0,
            rate.burst if rate else 0,
        ),
    )


def _decode_transition(raw: Any) -> Transition:
    outcome = _str(raw[0])
    return Transition(applied=outcome == "ok", record=decode_record(raw[1]))


def transition_op(
    job_id: str,
    to: JobStatus,
    allowed_from: Sequence[str],
    fields: Mapping[str, str] | None = None,
    now: float | None = None,
) -> Op[Transition]:
    pairs: list[str] = []
    for k, v in (fields or {}).items():
        pairs += [k, v]
    t = time.time() if now is None else now
    return Op(
        _decode_transition,
        script="transition",
        keys=(job_key(job_id),),
        args=(PREFIX, job_id, to.value, repr(t), ",".join(allowed_from), *pairs),
    )


def mark_running_op(job_id: str) -> Op[Transition]:
    # `running` is allowed too: a redelivered task (its first worker died) runs the job again.
    return transition_op(job_id, JobStatus.running, ACTIVE)


def succeed_op(job_id: str, result: StoredResult) -> Op[Transition]:
    return transition_op(job_id, JobStatus.succeeded, ACTIVE, {"result": result.model_dump_json()})


def fail_op(job_id: str, error: Problem) -> Op[Transition]:
    return transition_op(job_id, JobStatus.failed, ACTIVE, {"error": error.model_dump_json()})


def mark_canceled_op(job_id: str) -> Op[Transition]:
    return transition_op(job_id, JobStatus.canceled, ACTIVE)


def requeue_op(job_id: str) -> Op[Transition]:
    """Running → queued: a worker shutting down hands the job back (its message goes back to the queue)."""
    return transition_op(job_id, JobStatus.queued, (JobStatus.running.value,))


def rate_limit_op(subject: str, rate_per_s: float, burst: int, cost: int = 1) -> Op[RateDecision]:
    """Take `cost` tokens from `subject`'s bucket (refilled at `rate_per_s`, holding at most `burst`)."""

    def decode(raw: Any) -> RateDecision:
        allowed = int(raw[0]) == 1
        return RateDecision(allowed, 0.0 if allowed else int(raw[1]) / 1000)

    return Op(decode, script="rate_limit", keys=(rate_limit_key(subject),), args=(rate_per_s, burst, cost))


def request_cancel_op(job_id: str, now: float | None = None) -> Op[tuple[str, JobRecord | None]]:
    """`('canceled' | 'requested' | 'terminal' | 'missing', record)`."""

    def decode(raw: Any) -> tuple[str, JobRecord | None]:
        return _str(raw[0]), decode_record(raw[1])

    t = time.time() if now is None else now
    return Op(decode, script="request_cancel", keys=(job_key(job_id),), args=(PREFIX, job_id, repr(t)))


def progress_op(job_id: str, stage: str, step: int, total: int, now: float | None = None) -> Op[ProgressAck]:
    def decode(raw: Any) -> ProgressAck:
        return ProgressAck(written=int(raw[0]) == 1, cancel_requested=int(raw[1]) == 1)

    t = time.time() if now is None else now
    return Op(decode, script="progress", keys=(job_key(job_id),), args=(stage, int(step), int(total), repr(t)))


def get_any_op(job_id: str) -> Op[JobRecord | None]:
    """A job whoever owns it (workers; the service always goes through `get_op`)."""
    return Op(decode_record, command=("HGETALL", job_key(job_id)))


def get_op(tenant: str, job_id: str) -> Op[JobRecord | None]:
    """A job of this tenant; another tenant's job is None, exactly like a missing one."""

    def decode(raw: Any) -> JobRecord | None:
        record = decode_record(raw)
        return record if record is not None and record.tenant == tenant else None

    return Op(decode, command=("HGETALL", job_key(job_id)))


def is_cancel_requested_op(job_id: str) -> Op[bool]:
    return Op(lambda raw: raw is not None and _str(raw) == "1", command=("HGET", job_key(job_id), "cancel"))


def list_op(tenant: str, *, cursor: str | None = None, limit: int = 20, status: JobStatus | None = None) -> Op[Page]:
    """One page newest first; `cursor` is the `next_cursor` of the previous page."""

    def decode(raw: Any) -> Page:
        records = [r for r in (decode_record(pair[1]) for pair in raw) if r is not None]
        more = len(raw) > limit
        records = records[:limit]
        return Page(records, next_cursor=_str(raw[limit - 1][0]) if more else None)

    return Op(decode, script="list", keys=(tenant_index(tenant, status),), args=(PREFIX, cursor or "", limit + 1))


def put_asset_op(asset: AssetRecord) -> Op[None]:
    return Op(lambda raw: None, command=("SET", asset_key(asset.tenant, asset.id), asset.model_dump_json()))


def get_asset_op(tenant: str, asset_id: str) -> Op[AssetRecord | None]:
    def decode(raw: Any) -> AssetRecord | None:
        return None if raw is None else AssetRecord.model_validate_json(_str(raw))

    return Op(decode, command=("GET", asset_key(tenant, asset_id)))


def heartbeat_op(model: str, worker: str, ttl_s: float = 60.0) -> Op[None]:
    return Op(lambda raw: None, command=("ZADD", warm_key(model), repr(time.time() + ttl_s), worker))


def warm_workers_op(model: str) -> Op[list[str]]:
    return Op(
        lambda raw: sorted(_str(w) for w in raw or []),
        command=("ZRANGEBYSCORE", warm_key(model), repr(time.time()), "+inf"),
    )


def status_counts_op() -> Op[dict[str, int]]:
    def decode(raw: Any) -> dict[str, int]:
        h = decode_hash(raw)
        return {s.value: int(h.get(s.value, "0")) for s in JobStatus}

    return Op(decode, command=("HGETALL", STATUS_STATS))


def duration_stats_op(status: str) -> Op[dict[str, float]]:
    """`{"sum", "count", "le:<bound>"...}` of run times of jobs that ended in `status`."""
    return Op(
        lambda raw: {k: float(v) for k, v in decode_hash(raw).items()},
        command=("HGETALL", duration_stats(status)),
    )


def queue_depth_op(queue: str) -> Op[int]:
    """Messages waiting in a Celery queue on the Redis broker (a list named after the queue)."""
    return Op(lambda raw: int(raw or 0), command=("LLEN", queue))


def ping_op() -> Op[bool]:
    return Op(lambda raw: bool(raw), command=("PING",))
