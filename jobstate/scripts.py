"""The Lua scripts of job state, by name (`SCRIPTS`); `jobstate.operations` says which one an op runs.

A script checks the current status and writes in one step, so a redelivered task and a concurrent
cancel cannot race. Keys come in `KEYS` where the caller knows them (`jobstate.redis_keys`); the tenant
and stats keys are built inside from the prefix the caller passes, which is fine on one Redis (not a
cluster).
"""

from jobstate.redis_keys import DURATION_BUCKETS, KOMBU_UNACKED, KOMBU_UNACKED_INDEX, bucket_name

_LUA_COMMON = (
    """
local P = ARGV[1]
local function is_terminal(s)
  return s == 'succeeded' or s == 'failed' or s == 'canceled'
end
local BUCKETS = {__BUCKETS__}
local BUCKET_NAMES = {__BUCKET_NAMES__}
-- The set of the running jobs of job `jk`'s model (`model:<name>:running`): an autoscaler adds its
-- size to the model's queue length, so that a worker in the middle of a job is still counted.
local function model_running(jk)
  return P .. 'model:' .. (redis.call('HGET', jk, 'model') or '') .. ':running'
end
-- Move job `id` (hash `jk`) from status `from` to `to`, keep the indexes and counters right,
-- stamp the times and tell subscribers. Returns nothing; the caller checked `from` is allowed.
-- `counted` (running → queued only): the run ended with its worker lost, so it stays counted toward
-- the poison limit; otherwise the worker handed the job back and the run does not count.
local function move(jk, id, from, to, now, counted)
  local tenant = redis.call('HGET', jk, 'tenant')
  if from ~= to then
    local base = P .. 'tenant:' .. tenant .. ':jobs:'
    redis.call('ZREM', base .. from, id)
    redis.call('ZADD', base .. to, 0, id)
    redis.call('HINCRBY', P .. 'stats:status', from, -1)
    redis.call('HINCRBY', P .. 'stats:status', to, 1)
  end
  redis.call('HSET', jk, 'status', to)
  if from == 'running' and to ~= 'running' then
    -- the run is over: no lease to renew, nothing for the reaper to look at
    redis.call('DEL', jk .. ':lease')
    redis.call('SREM', P .. 'jobs:running', id)
    redis.call('HDEL', jk, 'preview')  -- live previews are for a run in progress
    redis.call('SREM', model_running(jk), id)
  end
  if to == 'queued' and from == 'running' then
    if not counted then redis.call('HINCRBY', jk, 'attempts', -1) end
    redis.call('HDEL', jk, 'stage', 'step', 'total', 'worker')
  end
  if to == 'running' then
    redis.call('HSET', jk, 'started_at', now)
    redis.call('HINCRBY', jk, 'attempts', 1)
    redis.call('SADD', P .. 'jobs:running', id)
    redis.call('SADD', model_running(jk), id)
  end
  if is_terminal(to) then
    redis.call('HSET', jk, 'finished_at', now)
    -- retention: a finished job's record goes that long after it ends (its index entries lazily, by _LIST)
    local keep = tonumber(redis.call('HGET', jk, 'retain_s') or '0')
    if keep and keep > 0 then redis.call('EXPIRE', jk, keep) end
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
-- A running job with an owner whose lease has expired: its worker process is gone.
local function worker_lost(jk)
  return redis.call('HEXISTS', jk, 'worker') == 1 and redis.call('EXISTS', jk .. ':lease') == 0
end
-- Take the job's task message (`task`, as queued) out of kombu's unacknowledged messages, where the
-- lost worker's delivery of it waits for the visibility timeout: it is queued again or not needed.
local function drop_unacked(task)
  local ok, message = pcall(cjson.decode, task)
  if not ok or type(message) ~= 'table' or type(message['properties']) ~= 'table' then return end
  local tag = message['properties']['delivery_tag']
  if type(tag) ~= 'string' then return end
  redis.call('HDEL', '__UNACKED__', tag)
  redis.call('ZREM', '__UNACKED_INDEX__', tag)
end
""".replace("__BUCKETS__", ", ".join(repr(b) for b in DURATION_BUCKETS))
    .replace("__BUCKET_NAMES__", ", ".join(f"'{bucket_name(b)}'" for b in DURATION_BUCKETS))
    .replace("__UNACKED__", KOMBU_UNACKED)
    .replace("__UNACKED_INDEX__", KOMBU_UNACKED_INDEX)
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
#       task message (pushed onto the queue list only when the job is created), bucket's rate, bucket's burst,
#       seconds the record is kept after the job ends (0: kept)
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
    local job = redis.call('HGETALL', P .. 'job:' .. prior['job_id'])
    -- a key whose job was deleted is free again: the request makes a new job
    if #job > 0 then return {'existing', existing, job} end
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
-- kept so that a reaper can queue the job again when its worker is lost
if qk ~= '' then redis.call('HSET', jk, 'task', ARGV[10], 'queue', qk) end
if tonumber(ARGV[13]) > 0 then redis.call('HSET', jk, 'retain_s', ARGV[13]) end
redis.call('ZADD', P .. 'tenant:' .. tenant .. ':jobs', 0, id)
redis.call('ZADD', P .. 'tenant:' .. tenant .. ':jobs:queued', 0, id)
redis.call('HINCRBY', P .. 'stats:status', 'queued', 1)
if ik ~= '' then redis.call('SET', ik, ARGV[7], 'EX', tonumber(ARGV[8])) end
if qk ~= '' then redis.call('LPUSH', qk, ARGV[10]) end
return {'created', '', {}}
"""
)

# KEYS: job hash
# ARGV: prefix, id, to status, now, allowed-from (comma separated), owner ('' for any: else only the
#       worker whose run holds the job may move it), then field/value pairs to set
_TRANSITION = (
    _LUA_COMMON
    + """
local jk, id, to, now, owner = KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6]
local from = redis.call('HGET', jk, 'status')
if not from then return {'missing', {}} end
local allowed = false
for s in string.gmatch(ARGV[5], '[^,]+') do
  if s == from then allowed = true end
end
if owner ~= '' and redis.call('HGET', jk, 'worker') ~= owner then allowed = false end
if not allowed then return {'rejected', redis.call('HGETALL', jk)} end
for i = 7, #ARGV, 2 do redis.call('HSET', jk, ARGV[i], ARGV[i + 1]) end
move(jk, id, from, to, now)
return {'ok', redis.call('HGETALL', jk)}
"""
)

# KEYS: job hash. ARGV: prefix, id, now, worker ('' for a claim without a lease), lease in milliseconds.
# Queued → running; running → running only when no live worker holds the job (a redelivery after the
# holder was lost, or the holder itself taking back a job it handed to the broker): 'busy' otherwise.
_CLAIM = (
    _LUA_COMMON
    + """
local jk, id, now, worker = KEYS[1], ARGV[2], ARGV[3], ARGV[4]
local from = redis.call('HGET', jk, 'status')
if not from then return {'missing', {}} end
if from ~= 'queued' and from ~= 'running' then return {'rejected', redis.call('HGETALL', jk)} end
if from == 'running' then
  local holder = redis.call('GET', jk .. ':lease')
  if holder and holder ~= worker then return {'busy', redis.call('HGETALL', jk)} end
end
if worker ~= '' then
  redis.call('HSET', jk, 'worker', worker)
  redis.call('SET', jk .. ':lease', worker, 'PX', ARGV[5])
else
  redis.call('HDEL', jk, 'worker')
  redis.call('DEL', jk .. ':lease')
end
move(jk, id, from, 'running', now)
return {'ok', redis.call('HGETALL', jk)}
"""
)

# KEYS: job hash. ARGV: worker, lease in milliseconds. Renews the lease while this worker's run holds
# the job, also after it lapsed (Redis was unreachable for longer than a lease) as long as no reaper
# took the job back meanwhile; returns 0 when the run no longer holds it (taken back, or ended).
_RENEW_LEASE = """
local jk = KEYS[1]
if redis.call('HGET', jk, 'status') ~= 'running' or redis.call('HGET', jk, 'worker') ~= ARGV[1] then return 0 end
redis.call('SET', jk .. ':lease', ARGV[1], 'PX', ARGV[2])
return 1
"""

# ARGV: prefix, now, most deliveries. Every running job whose worker was lost (its lease expired) is
# queued again: back to `queued` (the lost run still counts toward the poison limit) and its task
# message onto its queue's consuming end, taken out of kombu's unacknowledged messages so that the
# visibility timeout does not deliver it a second time. A job whose runs reached the limit is left
# running and reported as 'poison' for the caller to fail (the failure carries problem details). A
# job without a kept task message (created before they were kept) is left to the visibility timeout;
# a job whose cancel was asked for is canceled.
# Returns {{id, 'requeued' | 'canceled' | 'poison' | 'no_task', attempts, lost worker}...}. Safe to run from any
# number of processes at once: each job is checked and moved in one step.
_REAP = (
    _LUA_COMMON
    + """
local now, most = ARGV[2], tonumber(ARGV[3])
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'jobs:running')) do
  local jk = P .. 'job:' .. id
  if redis.call('HGET', jk, 'status') ~= 'running' then
    redis.call('SREM', P .. 'jobs:running', id)
    if redis.call('EXISTS', jk) == 1 then redis.call('SREM', model_running(jk), id) end
  elseif worker_lost(jk) then
    local attempts = tonumber(redis.call('HGET', jk, 'attempts') or '0')
    local worker = redis.call('HGET', jk, 'worker')
    local task, queue = redis.call('HGET', jk, 'task'), redis.call('HGET', jk, 'queue')
    if redis.call('HGET', jk, 'cancel') == '1' then
      -- canceled while its worker was dying: nobody is left to read the flag
      if task then drop_unacked(task) end
      move(jk, id, 'running', 'canceled', now)
      out[#out + 1] = {id, 'canceled', attempts, worker}
    elseif attempts >= most then
      out[#out + 1] = {id, 'poison', attempts, worker}
    elseif task and queue then
      drop_unacked(task)
      move(jk, id, 'running', 'queued', now, true)
      redis.call('RPUSH', queue, task)
      out[#out + 1] = {id, 'requeued', attempts, worker}
    else
      out[#out + 1] = {id, 'no_task', attempts, worker}
    end
  end
end
return out
"""
)

# KEYS: job hash. ARGV: prefix, id, now. Queued → canceled at once; running → flag for the worker,
# or canceled at once when its worker was lost (nothing would read the flag).
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
if worker_lost(jk) then
  local task = redis.call('HGET', jk, 'task')
  if task then drop_unacked(task) end
  move(jk, id, from, 'canceled', now)
  return {'canceled', redis.call('HGETALL', jk)}
end
redis.call('PUBLISH', jk .. ':events', cjson.encode({type = 'cancel_requested'}))
return {'requested', redis.call('HGETALL', jk)}
"""
)

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

# KEYS: index. ARGV: prefix, cursor ('' for the first page), count. Returns job hashes, newest first.
# An id whose record has expired (retention) leaves the index as the page passes it.
_LIST = """
local P = ARGV[1]
local max = ARGV[2] == '' and '+' or '(' .. ARGV[2]
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], max, '-', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i, id in ipairs(ids) do
  local job = redis.call('HGETALL', P .. 'job:' .. id)
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

# KEYS: the tenant's asset index. ARGV: prefix, tenant, cursor ('' for the first page), count.
# Returns the asset records (JSON), newest first.
_ASSET_LIST = """
local max = ARGV[3] == '' and '+' or '(' .. ARGV[3]
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], max, '-', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i, id in ipairs(ids) do
  out[i] = {id, redis.call('GET', ARGV[1] .. 'asset:' .. ARGV[2] .. ':' .. id) or ''}
end
return out
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

# KEYS: the tenant's anchor index. ARGV: prefix, tenant, cursor ('' for the first page), count.
# Returns {id, latest, latest, body} per anchor set, newest first.
_ANCHOR_LIST = """
local max = ARGV[3] == '' and '+' or '(' .. ARGV[3]
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], max, '-', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i, id in ipairs(ids) do
  local ak = ARGV[1] .. 'anchor:' .. ARGV[2] .. ':' .. id
  local latest = redis.call('HGET', ak, 'latest') or '0'
  out[i] = {id, latest, latest, redis.call('HGET', ak, 'v:' .. latest) or ''}
end
return out
"""

# KEYS: anchor hash, the tenant's anchor index. ARGV: id. Returns 1 when the anchor set existed.
_ANCHOR_DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""

# KEYS: job hashes. Returns, per job, its place in its queue (0 = the next delivered), or -1 when it is
# not queued or its task is not in the queue (delivered, not yet claimed). kombu pushes tasks on the left
# and workers pop from the right; the reaper pushes a job back on the right, to be next. The task is
# found as queued (LPOS); a message re-serialized by the broker is found by the job id it carries.
_QUEUE_POSITIONS = """
local out, listed = {}, {}
for i, jk in ipairs(KEYS) do
  local f = redis.call('HMGET', jk, 'status', 'queue', 'task', 'id')
  local position = -1
  if f[1] == 'queued' and f[2] and f[3] then
    local index = redis.call('LPOS', f[2], f[3])
    if not index then
      listed[f[2]] = listed[f[2]] or redis.call('LRANGE', f[2], 0, -1)
      for k, message in ipairs(listed[f[2]]) do
        if string.find(message, f[4], 1, true) then index = k - 1 break end
      end
    end
    if index then position = redis.call('LLEN', f[2]) - 1 - index end
  end
  out[i] = position
end
return out
"""

# KEYS: job hash. ARGV: prefix, id. Removes a finished job's record and its index entries; a job still
# queued or running is left alone. Returns {outcome, status}: 'deleted', 'active' or 'missing'.
_DELETE = """
local jk, P, id = KEYS[1], ARGV[1], ARGV[2]
local status = redis.call('HGET', jk, 'status')
if not status then return {'missing', ''} end
if status == 'queued' or status == 'running' then return {'active', status} end
local base = P .. 'tenant:' .. redis.call('HGET', jk, 'tenant') .. ':jobs'
redis.call('ZREM', base, id)
redis.call('ZREM', base .. ':' .. status, id)
redis.call('HINCRBY', P .. 'stats:status', status, -1)
redis.call('DEL', jk, jk .. ':lease')
return {'deleted', status}
"""

# KEYS: comparison hash, the set of comparisons under way. ARGV: the member (`<tenant>/<id>`), then
# field/value pairs. Writes a new comparison and lists it as under way, in one step.
_COMPARISON_PUT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: comparison hash, the CPU queue's list. ARGV: the composition's task message.
# Queues the composition once: sets `compose` to `queued` and pushes its task in the same step, so the
# side-by-side is asked for exactly once however many API processes notice the children are done.
# Returns 1 when it queued it, 0 when it was queued already, canceled, or there is no comparison.
_COMPARISON_COMPOSE = """
local ck, qk = KEYS[1], KEYS[2]
if redis.call('EXISTS', ck) == 0 then return 0 end
local state = redis.call('HGET', ck, 'compose')
if (state and state ~= '') or redis.call('HGET', ck, 'cancel') == '1' then return 0 end
local kind = redis.call('TYPE', qk)['ok']
if kind ~= 'none' and kind ~= 'list' then return redis.error_reply('queue key ' .. qk .. ' holds a ' .. kind) end
redis.call('HSET', ck, 'compose', 'queued')
redis.call('LPUSH', qk, ARGV[1])
return 1
"""

# KEYS: comparison hash. ARGV: `succeeded` or `failed`, the field to set (`result` or `error`), its
# JSON, now. Only a queued composition finishes, once; returns 1 when this call finished it.
_COMPARISON_FINISH = """
local ck = KEYS[1]
if redis.call('HGET', ck, 'compose') ~= 'queued' then return 0 end
redis.call('HSET', ck, 'compose', ARGV[1], ARGV[2], ARGV[3], 'finished_at', ARGV[4])
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

SCRIPTS: dict[str, str] = {
    "queue_positions": _QUEUE_POSITIONS,
    "delete": _DELETE,
    "create": _CREATE,
    "rate_limit": _RATE_LIMIT,
    "transition": _TRANSITION,
    "claim": _CLAIM,
    "renew_lease": _RENEW_LEASE,
    "reap": _REAP,
    "request_cancel": _REQUEST_CANCEL,
    "progress": _PROGRESS,
    "preview": _PREVIEW,
    "observe": _OBSERVE,
    "list": _LIST,
    "asset_put": _ASSET_PUT,
    "asset_list": _ASSET_LIST,
    "anchor_put": _ANCHOR_PUT,
    "anchor_get": _ANCHOR_GET,
    "anchor_list": _ANCHOR_LIST,
    "anchor_delete": _ANCHOR_DELETE,
    "comparison_put": _COMPARISON_PUT,
    "comparison_compose": _COMPARISON_COMPOSE,
    "comparison_finish": _COMPARISON_FINISH,
    "comparison_cancel": _COMPARISON_CANCEL,
}
