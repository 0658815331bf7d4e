"""The Lua scripts of job state, by name (`SCRIPTS`), and of the broker (`BROKER_SCRIPTS`);
`jobstate.operations` says which one an op runs.

A script checks the current status and writes in one step, so a redelivered task and a concurrent
cancel cannot race. Every key a script touches comes in `KEYS` (none is built inside from a prefix or
read from a record), and a script's keys share one Redis Cluster hash slot (`jobstate.redis_keys`):
a job's keys and its tenant's under their shard's tag (`{vsteer:<n>}`), with that shard's running
sets, counters and `dispatch`; a tenant's library under its own tag. A script that needs a key named
after something in the record (the tenant's indexes, the model's running set) is given the keys the
caller built from a read of the record before (`operations.job_keys`: a job's tenant and model never
change), and checks that the record still names that tenant.

Scripts that move a job get the same first `KEYS` (`MOVE_KEYS`, below); the others say theirs.

The broker's scripts touch kombu's keys only, on the broker (`jobstate.dispatch`).
"""

from jobstate.redis_keys import DURATION_BUCKETS, bucket_name

# The first KEYS of every script that moves a job (`operations.job_keys` builds them in this order).
MOVE_KEYS = (
    "job",
    "lease",
    "running",
    "model_running",
    "stats",
    "index_queued",
    "index_running",
    "index_succeeded",
    "index_failed",
    "index_canceled",
    "duration_succeeded",
    "duration_failed",
    "duration_canceled",
    "dispatch",
)

_LUA_COMMON = """
local K = {job = KEYS[1], lease = KEYS[2], running = KEYS[3], model_running = KEYS[4], stats = KEYS[5],
  index = {queued = KEYS[6], running = KEYS[7], succeeded = KEYS[8], failed = KEYS[9], canceled = KEYS[10]},
  duration = {succeeded = KEYS[11], failed = KEYS[12], canceled = KEYS[13]}, dispatch = KEYS[14]}
-- A key the caller gave in place of none (`redis_keys.no_key`: its shard's tag, then `none`).
local function given(k)
  return string.sub(k, -6) ~= '}:none'
end
local function is_terminal(s)
  return s == 'succeeded' or s == 'failed' or s == 'canceled'
end
local BUCKETS = {__BUCKETS__}
local BUCKET_NAMES = {__BUCKET_NAMES__}
-- The keys were built for tenant ARGV[1], read from the record before; a record that names another
-- (it did not exist then) makes the caller read again.
local function keys_fit()
  local tenant = redis.call('HGET', K.job, 'tenant')
  return not tenant or tenant == ARGV[1]
end
-- Move job `id` from status `from` to `to`, keep the indexes and counters right, stamp the times and
-- tell subscribers. Returns nothing; the caller checked `from` is allowed.
-- `counted` (running → queued only): the run ended with its worker lost, so it stays counted toward
-- the poison limit; otherwise the worker handed the job back and the run does not count.
-- The job's model's running set (`model_running`): an autoscaler adds its size to the model's queue
-- length, so that a worker in the middle of a job is still counted.
local function move(id, from, to, now, counted)
  local jk = K.job
  if from ~= to then
    redis.call('ZREM', K.index[from], id)
    redis.call('ZADD', K.index[to], 0, id)
    redis.call('HINCRBY', K.stats, from, -1)
    redis.call('HINCRBY', K.stats, to, 1)
  end
  redis.call('HSET', jk, 'status', to)
  if from == 'running' and to ~= 'running' then
    -- the run is over: no lease to renew, nothing for the reaper to look at
    redis.call('DEL', K.lease)
    redis.call('SREM', K.running, id)
    redis.call('HDEL', jk, 'preview')  -- live previews are for a run in progress
    redis.call('SREM', K.model_running, id)
  end
  if to == 'queued' and from == 'running' then
    if not counted then redis.call('HINCRBY', jk, 'attempts', -1) end
    redis.call('HDEL', jk, 'stage', 'step', 'total', 'worker')
  end
  if to == 'running' then
    redis.call('HSET', jk, 'started_at', now)
    redis.call('HINCRBY', jk, 'attempts', 1)
    redis.call('SADD', K.running, id)
    redis.call('SADD', K.model_running, id)
  end
  if is_terminal(to) then
    redis.call('HSET', jk, 'finished_at', now)
    -- retention: a finished job's record goes that long after it ends (its index entries lazily, by _LIST_RECORDS)
    local keep = tonumber(redis.call('HGET', jk, 'retain_s') or '0')
    if keep and keep > 0 then redis.call('EXPIRE', jk, keep) end
    local started = redis.call('HGET', jk, 'started_at') or redis.call('HGET', jk, 'created_at')
    local d = tonumber(now) - tonumber(started)
    local hk = K.duration[to]
    redis.call('HINCRBYFLOAT', hk, 'sum', d)
    redis.call('HINCRBY', hk, 'count', 1)
    for i, le in ipairs(BUCKETS) do
      if d <= le then redis.call('HINCRBY', hk, 'le:' .. BUCKET_NAMES[i], 1) end
    end
  end
  -- a channel, not a key: cluster-wide on Redis Cluster
  redis.call('PUBLISH', jk .. ':events', cjson.encode({type = 'status', status = to}))
end
-- A running job with an owner whose lease has expired: its worker process is gone.
local function worker_lost()
  return redis.call('HEXISTS', K.job, 'worker') == 1 and redis.call('EXISTS', K.lease) == 0
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

# KEYS: MOVE_KEYS, then the idempotency key, the rate-limit bucket (`redis_keys.no_key` for none of either), the
#       tenant's index of all its jobs, and the record of the job the idempotency key named when the
#       caller read it (`no_key` when it named none).
# ARGV: tenant, id, model, request, now, idem value, idem ttl, most active jobs per tenant (0: no cap),
#       task message ('' for none), its queue, bucket's rate, bucket's burst, seconds the record is kept
#       after the job ends (0: kept), the job id the caller read from the idempotency key ('' for none)
# Returns {outcome, idem value or wait, prior job, dispatch pending (0/1)}; 'retry' when the
# idempotency key names another job than the caller read (read it again).
# The task is kept on the record and listed in `dispatch`: the caller pushes it onto the broker's
# queue next and then takes it off `dispatch` (`jobstate.dispatch`).
_CREATE = (
    _LUA_COMMON
    + _LUA_TOKEN
    + """
local jk, ik, bk, all, prior_key = K.job, KEYS[15], KEYS[16], KEYS[17], KEYS[18]
local id, tenant, now = ARGV[2], ARGV[1], ARGV[5]
if redis.call('EXISTS', jk) == 1 then
  -- Job ids are random: this very call already ran (the client retried it after a lost reply).
  if redis.call('HGET', jk, 'tenant') == tenant and redis.call('HGET', jk, 'created_at') == now then
    return {'created', '', {}, redis.call('ZSCORE', K.dispatch, jk) and 1 or 0}
  end
  return {'exists', '', {}, 0}
end
if given(bk) then
  -- the request's rate-limit token, taken first as for any request of the key
  local allowed, wait = take_token(bk, tonumber(ARGV[11]), tonumber(ARGV[12]), 1)
  if allowed == 0 then return {'rate_limited', wait, {}, 0} end
end
if given(ik) then
  local existing = redis.call('GET', ik)
  if existing then
    local prior = cjson.decode(existing)
    if prior['job_id'] ~= ARGV[14] then return {'retry', '', {}, 0} end
    local job = redis.call('HGETALL', prior_key)
    -- a key whose job was deleted is free again: the request makes a new job
    if #job > 0 then return {'existing', existing, job, 0} end
  end
end
local cap = tonumber(ARGV[8])
if cap > 0 then
  local active = redis.call('ZCARD', K.index.queued) + redis.call('ZCARD', K.index.running)
  if active >= cap then return {'limited', tostring(active), {}, 0} end
end
redis.call('HSET', jk, 'id', id, 'tenant', tenant, 'status', 'queued', 'model', ARGV[3],
  'request', ARGV[4], 'created_at', now, 'cancel', '0', 'attempts', 0)
local pending = 0
if ARGV[9] ~= '' then
  -- kept so that a reaper can queue the job again when its worker is lost
  redis.call('HSET', jk, 'task', ARGV[9], 'queue', ARGV[10])
  redis.call('ZADD', K.dispatch, now, jk)
  pending = 1
end
if tonumber(ARGV[13]) > 0 then redis.call('HSET', jk, 'retain_s', ARGV[13]) end
redis.call('ZADD', all, 0, id)
redis.call('ZADD', K.index.queued, 0, id)
redis.call('HINCRBY', K.stats, 'queued', 1)
if given(ik) then redis.call('SET', ik, ARGV[6], 'EX', tonumber(ARGV[7])) end
return {'created', '', {}, pending}
"""
)

# KEYS: as _CREATE. ARGV: tenant, id. Takes back a job just created whose task the broker refused
# (its queue key holds another type): the record, its index entries, its count, its `dispatch` entry
# and the idempotency key that names it. Returns 1 when there was such a job.
_UNCREATE = (
    _LUA_COMMON
    + """
local jk, ik, all, id = K.job, KEYS[15], KEYS[17], ARGV[2]
if not keys_fit() or redis.call('HGET', jk, 'status') ~= 'queued' then return 0 end
redis.call('ZREM', all, id)
redis.call('ZREM', K.index.queued, id)
redis.call('HINCRBY', K.stats, 'queued', -1)
redis.call('ZREM', K.dispatch, jk)
if given(ik) then
  local value = redis.call('GET', ik)
  if value and cjson.decode(value)['job_id'] == id then redis.call('DEL', ik) end
end
redis.call('DEL', jk)
return 1
"""
)

# KEYS: MOVE_KEYS
# ARGV: tenant, id, to status, now, allowed-from (comma separated), owner ('' for any: else only the
#       worker whose run holds the job may move it), then field/value pairs to set
_TRANSITION = (
    _LUA_COMMON
    + """
local jk, id, to, now, owner = K.job, ARGV[2], ARGV[3], ARGV[4], ARGV[6]
if not keys_fit() then return {'retry', {}} end
local from = redis.call('HGET', jk, 'status')
if not from then return {'missing', {}} end
local allowed = false
for s in string.gmatch(ARGV[5], '[^,]+') do
  if s == from then allowed = true end
end
if owner ~= '' and redis.call('HGET', jk, 'worker') ~= owner then allowed = false end
if not allowed then return {'rejected', redis.call('HGETALL', jk)} end
for i = 7, #ARGV, 2 do redis.call('HSET', jk, ARGV[i], ARGV[i + 1]) end
move(id, from, to, now)
return {'ok', redis.call('HGETALL', jk)}
"""
)

# KEYS: MOVE_KEYS. ARGV: tenant, id, now, worker ('' for a claim without a lease), lease in milliseconds.
# Queued → running; running → running only when no live worker holds the job (a redelivery after the
# holder was lost, or the holder itself taking back a job it handed to the broker): 'busy' otherwise.
_CLAIM = (
    _LUA_COMMON
    + """
local jk, id, now, worker = K.job, ARGV[2], ARGV[3], ARGV[4]
if not keys_fit() then return {'retry', {}} end
local from = redis.call('HGET', jk, 'status')
if not from then return {'missing', {}} end
if from ~= 'queued' and from ~= 'running' then return {'rejected', redis.call('HGETALL', jk)} end
if from == 'running' then
  local holder = redis.call('GET', K.lease)
  if holder and holder ~= worker then return {'busy', redis.call('HGETALL', jk)} end
end
if worker ~= '' then
  redis.call('HSET', jk, 'worker', worker)
  redis.call('SET', K.lease, worker, 'PX', ARGV[5])
else
  redis.call('HDEL', jk, 'worker')
  redis.call('DEL', K.lease)
end
move(id, from, 'running', now)
return {'ok', redis.call('HGETALL', jk)}
"""
)

# KEYS: job hash, its lease. ARGV: worker, lease in milliseconds. Renews the lease while this worker's
# run holds the job, also after it lapsed (Redis was unreachable for longer than a lease) as long as no
# reaper took the job back meanwhile; returns 0 when the run no longer holds it (taken back, or ended).
_RENEW_LEASE = """
local jk = KEYS[1]
if redis.call('HGET', jk, 'status') ~= 'running' or redis.call('HGET', jk, 'worker') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the set of running jobs, then a job hash and its lease per id in ARGV (the set's members, as
# the caller read them). Ids whose record is gone leave the set. Returns, per id still running,
# {id, tenant, model, 1 when its worker was lost (its lease expired) else 0}, and per id listed but
# no longer running {id, tenant, model, -1} (the caller takes it off the running sets).
_REAP_SCAN = """
local out = {}
for i, id in ipairs(ARGV) do
  local jk, lk = KEYS[2 * i], KEYS[2 * i + 1]
  local f = redis.call('HMGET', jk, 'status', 'tenant', 'model', 'worker')
  if not f[1] then
    redis.call('SREM', KEYS[1], id)
  elseif f[1] ~= 'running' then
    out[#out + 1] = {id, f[2], f[3] or '', -1}
  elseif f[4] and redis.call('EXISTS', lk) == 0 then
    out[#out + 1] = {id, f[2], f[3] or '', 1}
  end
end
return out
"""

# KEYS: MOVE_KEYS. ARGV: tenant, id, now, most deliveries. A running job whose worker was lost (its
# lease expired) is queued again: back to `queued` (the lost run still counts toward the poison
# limit), its task listed in `dispatch` for the caller to put back on its queue's consuming end (and
# take out of kombu's unacknowledged messages, so that the visibility timeout does not deliver it a
# second time). A job whose runs reached the limit is left running and reported as 'poison' for the
# caller to fail (the failure carries problem details). A job without a kept task message (created
# before they were kept) is left to the visibility timeout; a job whose cancel was asked for is
# canceled. A job listed as running that is not is taken off the running sets ('stale').
# Returns {outcome ('requeued' | 'canceled' | 'poison' | 'no_task' | 'alive' | 'stale' | 'retry'),
# attempts, lost worker, task, queue}. Safe to run from any number of processes at once: the job is
# checked and moved in one step.
_REAP_JOB = (
    _LUA_COMMON
    + """
local jk, id, now, most = K.job, ARGV[2], ARGV[3], tonumber(ARGV[4])
if not keys_fit() then return {'retry', 0, '', '', ''} end
if redis.call('HGET', jk, 'status') ~= 'running' then
  redis.call('SREM', K.running, id)
  redis.call('SREM', K.model_running, id)
  return {'stale', 0, '', '', ''}
end
if not worker_lost() then return {'alive', 0, '', '', ''} end
local attempts = tonumber(redis.call('HGET', jk, 'attempts') or '0')
local worker = redis.call('HGET', jk, 'worker')
local task, queue = redis.call('HGET', jk, 'task'), redis.call('HGET', jk, 'queue')
if redis.call('HGET', jk, 'cancel') == '1' then
  -- canceled while its worker was dying: nobody is left to read the flag
  move(id, 'running', 'canceled', now)
  return {'canceled', attempts, worker, task or '', queue or ''}
elseif attempts >= most then
  return {'poison', attempts, worker, '', ''}
elseif task and queue then
  move(id, 'running', 'queued', now, true)
  redis.call('ZADD', K.dispatch, now, jk)
  return {'requeued', attempts, worker, task, queue}
end
return {'no_task', attempts, worker, '', ''}
"""
)

# KEYS: MOVE_KEYS. ARGV: tenant, id, now. Queued → canceled at once; running → flag for the worker,
# or canceled at once when its worker was lost (nothing would read the flag; the caller takes its
# task out of kombu's unacknowledged messages). Returns {outcome, record, task ('' unless the worker
# was lost)}.
_REQUEST_CANCEL = (
    _LUA_COMMON
    + """
local jk, id, now = K.job, ARGV[2], ARGV[3]
if not keys_fit() then return {'retry', {}, ''} end
local from = redis.call('HGET', jk, 'status')
if not from then return {'missing', {}, ''} end
if is_terminal(from) then return {'terminal', redis.call('HGETALL', jk), ''} end
redis.call('HSET', jk, 'cancel', '1')
if from == 'queued' then
  move(id, from, 'canceled', now)
  return {'canceled', redis.call('HGETALL', jk), ''}
end
if worker_lost() then
  move(id, from, 'canceled', now)
  return {'canceled', redis.call('HGETALL', jk), redis.call('HGET', jk, 'task') or ''}
end
redis.call('PUBLISH', jk .. ':events', cjson.encode({type = 'cancel_requested'}))
return {'requested', redis.call('HGETALL', jk), ''}
"""
)

# KEYS: the record (job or comparison) listed in `dispatch`, `dispatch`. Returns {task, queue} when its
# task should be on its queue (the job is still queued, the composition still queued) and may not be:
# the caller makes sure it is (`requeue_task`) and takes it off `dispatch`. Otherwise takes it off
# `dispatch` and returns {}.
_DISPATCH_CHECK = """
local f = redis.call('HMGET', KEYS[1], 'status', 'compose', 'task', 'queue')
if f[3] and f[4] and (f[1] == 'queued' or f[2] == 'queued') then return {f[3], f[4]} end
redis.call('ZREM', KEYS[2], KEYS[1])
return {}
"""

# KEYS: job hash. ARGV: stage, step, total, now, owner ('' for any).
# Returns {written (0/1), cancel requested (0/1), taken back (0/1: `owner` no longer holds the job)}.
_PROGRESS = """
local jk, owner = KEYS[1], ARGV[5]
local st = redis.call('HGET', jk, 'status')
local cancel = st and redis.call('HGET', jk, 'cancel') == '1' and 1 or 0
local lost = 0
if owner ~= '' and st and redis.call('HGET', jk, 'worker') ~= owner then lost = 1 end
if st ~= 'running' or lost == 1 then return {0, cancel, lost} end
redis.call('HSET', jk, 'stage', ARGV[1], 'step', ARGV[2], 'total', ARGV[3], 'updated_at', ARGV[4])
redis.call('PUBLISH', jk .. ':events', cjson.encode({type = 'progress', stage = ARGV[1],
  step = tonumber(ARGV[2]), total = tonumber(ARGV[3])}))
return {1, cancel, 0}
"""

# KEYS: job hash. ARGV: the preview (JSON, kept on the job), its event (JSON, published), owner ('' for any).
# Returns 1 when written (the job is running, held by `owner`), 0 otherwise.
_PREVIEW = """
local jk, owner = KEYS[1], ARGV[3]
if redis.call('HGET', jk, 'status') ~= 'running' then return 0 end
if owner ~= '' and redis.call('HGET', jk, 'worker') ~= owner then return 0 end
redis.call('HSET', jk, 'preview', ARGV[1])
redis.call('PUBLISH', jk .. ':events', ARGV[2])
return 1
"""

# KEYS: a histogram hash (`sum`, `count`, `le:<bound>`). ARGV: the value, then the bounds' names and values.
_OBSERVE = """
local v = tonumber(ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[1], 'sum', v)
redis.call('HINCRBY', KEYS[1], 'count', 1)
for i = 2, #ARGV, 2 do
  if v <= tonumber(ARGV[i + 1]) then redis.call('HINCRBY', KEYS[1], 'le:' .. ARGV[i], 1) end
end
"""

# KEYS: index, then the job hash of each id in ARGV (a page of the index, as the caller read it).
# Returns {id, job hash} per id; an id whose record has expired (retention) leaves the index.
_LIST_RECORDS = """
local out = {}
for i, id in ipairs(ARGV) do
  local job = redis.call('HGETALL', KEYS[i + 1])
  if #job == 0 then redis.call('ZREM', KEYS[1], id) end
  out[i] = {id, job}
end
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

# KEYS: the asset record, the tenant's asset index. ARGV: record (JSON), id.
_ASSET_PUT = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
"""

# Anchor sets (`anchor:<tenant>:<id>` hashes: `latest` and one `v:<n>` per version, never rewritten).
# KEYS: anchor hash, the tenant's anchor index. ARGV: id, tenant, version body (JSON), '1' for a new set.
# Returns the version written, or 0 when a new version's anchor set does not exist.
_ANCHOR_PUT = """
local ak, ik = KEYS[1], KEYS[2]
if ARGV[4] == '1' then
  redis.call('HSET', ak, 'id', ARGV[1], 'tenant', ARGV[2], 'latest', 0)
  redis.call('ZADD', ik, 0, ARGV[1])
elseif redis.call('EXISTS', ak) == 0 then
  return 0
end
local v = redis.call('HINCRBY', ak, 'latest', 1)
redis.call('HSET', ak, 'v:' .. v, ARGV[3])
return v
"""

# KEYS: anchor hash. ARGV: version ('' for the latest). Returns {latest, version, body}, or {} when the
# anchor set or that version does not exist.
_ANCHOR_GET = """
local latest = redis.call('HGET', KEYS[1], 'latest')
if not latest then return {} end
local v = ARGV[1] ~= '' and ARGV[1] or latest
local body = redis.call('HGET', KEYS[1], 'v:' .. v)
if not body then return {} end
return {latest, v, body}
"""

# KEYS: anchor hashes (a page of the tenant's anchor index). Returns {latest, latest, body} per anchor
# set at its latest version.
_ANCHOR_RECORDS = """
local out = {}
for i, ak in ipairs(KEYS) do
  local latest = redis.call('HGET', ak, 'latest') or '0'
  out[i] = {latest, latest, redis.call('HGET', ak, 'v:' .. latest) or ''}
end
return out
"""

# KEYS: anchor hash, the tenant's anchor index. ARGV: id. Returns 1 when the anchor set existed.
_ANCHOR_DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""

# KEYS: job hashes. Returns {status, queue, task, id} per job, for `queue_position` on the broker.
_QUEUE_FIELDS = """
local out = {}
for i, jk in ipairs(KEYS) do
  local f = redis.call('HMGET', jk, 'status', 'queue', 'task', 'id')
  out[i] = {f[1] or '', f[2] or '', f[3] or '', f[4] or ''}
end
return out
"""

# KEYS: MOVE_KEYS, then the tenant's index of all its jobs. ARGV: tenant, id. Removes a finished job's
# record and its index entries; a job still queued or running is left alone. Returns {outcome,
# status}: 'deleted', 'active' or 'missing'.
_DELETE = (
    _LUA_COMMON
    + """
local jk, id = K.job, ARGV[2]
if not keys_fit() then return {'retry', ''} end
local status = redis.call('HGET', jk, 'status')
if not status then return {'missing', ''} end
if status == 'queued' or status == 'running' then return {'active', status} end
redis.call('ZREM', KEYS[15], id)
redis.call('ZREM', K.index[status], id)
redis.call('HINCRBY', K.stats, status, -1)
redis.call('DEL', jk, K.lease)
return {'deleted', status}
"""
)

# KEYS: comparison hash, the set of comparisons under way. ARGV: the member (`<tenant>/<id>`), then
# field/value pairs. Writes a new comparison and lists it as under way, in one step.
_COMPARISON_PUT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: comparison hash, `dispatch`. ARGV: the composition's task message, its queue, now.
# Queues the composition once: sets `compose` to `queued`, keeps its task and lists it in `dispatch`
# in the same step, so the side-by-side is asked for exactly once however many API processes notice
# the children are done; the caller then pushes the task (`jobstate.dispatch`).
# Returns 1 when it queued it, 0 when it was queued already, canceled, or there is no comparison.
_COMPARISON_COMPOSE = """
local ck = KEYS[1]
if redis.call('EXISTS', ck) == 0 then return 0 end
local state = redis.call('HGET', ck, 'compose')
if (state and state ~= '') or redis.call('HGET', ck, 'cancel') == '1' then return 0 end
redis.call('HSET', ck, 'compose', 'queued', 'task', ARGV[1], 'queue', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ck)
return 1
"""

# KEYS: comparison hash. ARGV: `succeeded` or `failed`, the field to set (`result` or `error`), its
# JSON, now. Only a queued composition finishes, once; returns 1 when this call finished it.
_COMPARISON_FINISH = """
local ck = KEYS[1]
if redis.call('HGET', ck, 'compose') ~= 'queued' then return 0 end
redis.call('HSET', ck, 'compose', ARGV[1], ARGV[2], ARGV[3], 'finished_at', ARGV[4])
local keep = tonumber(redis.call('HGET', ck, 'retain_s') or '0')
if keep and keep > 0 then redis.call('EXPIRE', ck, keep) end
return 1
"""

# KEYS: comparison hash, the set of comparisons under way. ARGV: the member (`<tenant>/<id>`). The
# comparison needs no more looking after: it leaves the set, and unless its composition is still to
# finish (which starts the retention then), its record expires after the retention, as a finished
# job's does.
_COMPARISON_SETTLED = """
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'compose') == 'queued' then return 0 end
local keep = tonumber(redis.call('HGET', KEYS[1], 'retain_s') or '0')
if keep and keep > 0 and redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], keep) end
return 1
"""

# KEYS: comparison hash. Marks the comparison canceled unless its composition was already queued.
# Returns 1 when the comparison exists (its children are canceled by the caller either way).
_COMPARISON_CANCEL = """
local ck = KEYS[1]
if redis.call('EXISTS', ck) == 0 then return 0 end
local state = redis.call('HGET', ck, 'compose')
if not state or state == '' then redis.call('HSET', ck, 'cancel', '1') end
return 1
"""

# The broker's scripts: kombu's keys only. They run on the broker, which kombu needs to be one Redis
# (never a cluster), so the queue list and kombu's `unacked` keys may hash to different slots.

# KEYS: the queue's list, kombu's `unacked` hash, its `unacked_index` sorted set. ARGV: the task
# message, its delivery tag ('' when it has none). Puts the task back on its queue's consuming end,
# to be next, unless it is there already; takes its delivery out of kombu's unacknowledged messages
# (a lost worker's delivery would otherwise come back after the visibility timeout). Returns 1 when
# it pushed the task.
_REQUEUE_TASK = """
if ARGV[2] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'list' then return redis.error_reply('queue key ' .. KEYS[1] .. ' holds a ' .. kind) end
if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"""

# KEYS: the queue's list. ARGV: the task message. Pushes a new task where kombu's producers do (the
# tail: workers pop from the head, the right). Refuses a key of another type.
_PUSH_TASK = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'list' then return redis.error_reply('queue key ' .. KEYS[1] .. ' holds a ' .. kind) end
return redis.call('LPUSH', KEYS[1], ARGV[1])
"""

# KEYS: the queue's list, job state's `dispatch`. ARGV: the task message, its job record's key. The push
# of `_PUSH_TASK` and the record's removal from `dispatch` in one step: for a broker that is the
# job-state Redis (one server, or a Sentinel's primary), never a cluster, whose keys could not share a
# slot. A key of another type refuses the push and leaves the record in `dispatch`.
_PUSH_TASK_UNDISPATCH = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'list' then return redis.error_reply('queue key ' .. KEYS[1] .. ' holds a ' .. kind) end
local length = redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return length
"""

# KEYS: kombu's `unacked` hash, its `unacked_index`. ARGV: delivery tag. The delivery of a job that
# ended while its worker was lost is not needed any more.
_DROP_UNACKED = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: a queue's list. ARGV: task message and job id, per job. Returns, per job, its place in the
# queue (0 = the next delivered), or -1 when its task is not there (delivered, not yet claimed).
# kombu pushes tasks on the left and workers pop from the right; the reaper pushes a job back on the
# right, to be next. The task is found as queued (LPOS); a message re-serialized by the broker is
# found by the job id it carries.
_QUEUE_POSITIONS = """
local out, listed = {}, nil
local length = redis.call('LLEN', KEYS[1])
for i = 1, #ARGV, 2 do
  local index = redis.call('LPOS', KEYS[1], ARGV[i])
  if not index then
    listed = listed or redis.call('LRANGE', KEYS[1], 0, -1)
    for k, message in ipairs(listed) do
      if string.find(message, ARGV[i + 1], 1, true) then index = k - 1 break end
    end
  end
  out[#out + 1] = index and (length - 1 - index) or -1
end
return out
"""

SCRIPTS: dict[str, str] = {
    "queue_fields": _QUEUE_FIELDS,
    "delete": _DELETE,
    "create": _CREATE,
    "uncreate": _UNCREATE,
    "rate_limit": _RATE_LIMIT,
    "transition": _TRANSITION,
    "claim": _CLAIM,
    "renew_lease": _RENEW_LEASE,
    "reap_scan": _REAP_SCAN,
    "reap_job": _REAP_JOB,
    "request_cancel": _REQUEST_CANCEL,
    "dispatch_check": _DISPATCH_CHECK,
    "progress": _PROGRESS,
    "preview": _PREVIEW,
    "observe": _OBSERVE,
    "list_records": _LIST_RECORDS,
    "asset_put": _ASSET_PUT,
    "anchor_put": _ANCHOR_PUT,
    "anchor_get": _ANCHOR_GET,
    "anchor_records": _ANCHOR_RECORDS,
    "anchor_delete": _ANCHOR_DELETE,
    "comparison_put": _COMPARISON_PUT,
    "comparison_compose": _COMPARISON_COMPOSE,
    "comparison_settled": _COMPARISON_SETTLED,
    "comparison_finish": _COMPARISON_FINISH,
    "comparison_cancel": _COMPARISON_CANCEL,
}

# Scripts over the broker's keys and job state's together: registered only where they are one Redis.
SAME_SERVER_SCRIPTS: dict[str, str] = {"push_task": _PUSH_TASK_UNDISPATCH}

BROKER_SCRIPTS: dict[str, str] = {
    "requeue_task": _REQUEUE_TASK,
    "push_task": _PUSH_TASK,
    "drop_unacked": _DROP_UNACKED,
    "queue_positions": _QUEUE_POSITIONS,
}
