"""The names of everything job state keeps in Redis.

Redis Cluster: a Lua script (`jobstate.scripts`) may only touch keys that hash to one slot, and it
names every one of them in `KEYS`. A job's state change is one script over its record, its lease,
its tenant's indexes, the running sets and the counters. So job state is split into `SHARDS` shards,
each with its own hash tag, `{vsteer:<n><letters>}:` (`SHARD_TAGS`, `shard_prefix`; `{vsteer:<n>…}`
below): a tenant's jobs, idempotency keys,
comparisons, directions and rate-limit buckets are in the tenant's shard (`tenant_shard`, a CRC-32 of
the tenant), and each shard keeps its own running sets, counters, histograms and `dispatch`. A job's
id names its shard in its last hex digit (`records.new_job_id`, `job_shard`), so a worker or a reaper
holding only the id finds the record. A cluster places the shards' slots on its primaries; readers of
what is kept per shard (the reaper, the metrics, KEDA) read every shard and add up.
What belongs to one tenant and changes on its own, its assets and anchor sets, carries the tenant's
own tag, `vsteer:{<tenant>}:` (`tenant_prefix`). What belongs to no tenant and is written one key at a
time (warm workers, GPU memory, step times) keeps the unsharded tag `{vsteer}:` (`PREFIX`).
kombu's keys (queue lists, `unacked`) are not ours and are not tagged: they live on the broker, which
kombu needs to be one Redis (a primary, or a Sentinel-managed one), never a cluster; a step that
writes to them is a second step after the job-state script (`jobstate.dispatch`).

In each shard (prefix `{vsteer:<n>…}:`):

- `job:<id>` hash: id, tenant, status, model, request (JSON), created_at / started_at / finished_at
  (epoch seconds), stage / step / total / updated_at (progress), result (JSON), error (JSON),
  cancel ("1" when requested), attempts; the job's task message and queue (`task`, `queue`, written at
  creation, so that a reaper can queue the job again); `worker`, the id of the worker process whose
  run holds the job while it is `running`.
- `job:<id>:lease` string: the `worker` holding the running job, expiring unless that worker renews it
  (every heartbeat). A running job whose lease has expired lost its worker.
- `jobs:running` set: the shard's running jobs' ids, for the reaper's scan.
- `model:<name>:running` set: the ids of the model's running jobs in the shard, kept by the same steps
  as `jobs:running`; an autoscaler (`deploy/k8s`, KEDA) adds the sizes of the model's sets in every
  shard to the length of the model's queue list, so that a worker in the middle of a job is never
  counted as idle.
- `job:<id>:events` pub/sub channel: `{"type": "progress", "stage", "step", "total"}`,
  `{"type": "status", "status"}`, `{"type": "cancel_requested"}`.
- `tenant:<tenant>:jobs` and `tenant:<tenant>:jobs:<status>` sorted sets of job ids, all with score 0:
  ids sort by creation time, so `ZREVRANGEBYLEX` pages newest first and a cursor (the last id seen)
  stays stable under inserts.
- `idem:<tenant>:<sha256(key)>` string: `{"job_id", "body_hash"}` with a TTL.
- `dispatch` sorted set: the record key (`job:<id>`, `comparison:<tenant>:<id>`) of each task message
  written to the shard but not yet seen on the broker's list, scored by when; `jobstate.dispatch`.
- `comparison:<tenant>:<id>` hash: id, tenant, request (JSON, the comparison as accepted), seed, children
  (JSON list of `{model, job_id}`), created_at, cancel ("1" when asked), compose (`""`, `queued`,
  `succeeded`, `failed`: the side-by-side's state, set once to `queued` with its task), result / error
  (JSON), finished_at, retain_s (the record expires that long after the comparison ends).
  `comparisons:active` set of `<tenant>/<id>`: the comparisons whose side-by-side may still have to
  be queued (the API's reaper loop looks at them).
- `stats:status` hash: jobs per status; `stats:duration:<status>` hash: histogram of run times (the
  metrics add up the shards).
- `ratelimit:<sha256(api key)>` hash: tokens, ts (a token bucket per API key, in its tenant's shard,
  expiring when full).
- `direction:<tenant>:<id>`, `directions:<tenant>`: steering directions (`jobstate.directions`).

Unsharded (prefix `{vsteer}:`, `PREFIX`):

- `stats:step:<model>` hash: histogram of seconds per denoising step, as the model's workers report them.
- `model:<name>:gpu_memory` hash: worker → `{"bytes", "at"}`, the peak GPU memory of its last job.
- `model:<name>:warm` sorted set: worker name → expiry of its last heartbeat.

A tenant's library (prefix `vsteer:{<tenant>}:`, `tenant_prefix`):

- `asset:<id>` string: the asset record (JSON). `assets` sorted set of asset ids, score 0, newest first
  by `ZREVRANGEBYLEX` as for jobs.
- `anchor:<id>` hash: id, tenant, latest (the newest version), and `v:<n>` per version: its record
  (JSON: name, fields, sha256, created_at), written once. `anchors` sorted set of anchor ids, score 0,
  newest first by `ZREVRANGEBYLEX` as for jobs.

Not ours but read here: kombu's Redis transport keeps each delivered, not yet acknowledged message in
the hash `unacked` (delivery tag → `[message, exchange, routing key]`) and the sorted set
`unacked_index` (delivery tag → when delivered); the reaper takes a dead worker's message from them.

Key names changed when the shards came in (`{vsteer}:job:<id>` became `{vsteer:<n>…}:job:<id>`);
records kept under the old names are not read, so a deployment drains its jobs before it upgrades.
These are job-state records; the objects in storage have their own keys (`storage.keys`).
"""

import hashlib
import re
import zlib

from api_schemas import JobStatus

# The hash tags job state is spread over, one per shard. A tenant's jobs and everything they touch in
# one step share its shard's tag. The letters after each number put shard n's slot in the middle of
# the n-th eighth of the 16,384 slots (CRC-16, `redis.crc.key_slot`), so a cluster whose slots are split
# evenly among up to eight primaries (as `redis-cli --cluster create` splits them) holds job state on
# every one of them. Changing a tag moves its tenants' records (those under the old tag are not read),
# so the tags are fixed here, not a setting.
SHARD_TAGS = (
    "vsteer:0dr",
    "vsteer:1a",
    "vsteer:2ar",
    "vsteer:3b",
    "vsteer:4d",
    "vsteer:5dc",
    "vsteer:6c",
    "vsteer:7ac",
)
SHARDS = len(SHARD_TAGS)
# What belongs to no tenant and is written one key at a time (warm workers, GPU memory, step times).
PREFIX = "{vsteer}:"
# Upper bounds (seconds) of the job-duration histogram; `+Inf` is implied.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Seconds per denoising step (a whole batch of clips through the UNet, guided or not).
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_HEX = "0123456789abcdef"
_SHARD_TAG = re.compile(r"^\{(vsteer:\d[a-z]*)\}:")


def bucket_name(le: float) -> str:
    """How a histogram bound is named in Redis (`le:<name>`) and in Prometheus."""
    return format(le, "g")


def shard_prefix(shard: int) -> str:
    """The prefix of one shard of job state, with its own hash tag."""
    if not 0 <= shard < SHARDS:
        raise ValueError(f"shard must be in 0..{SHARDS - 1}, got {shard!r}")
    return f"{{{SHARD_TAGS[shard]}}}:"


def tenant_shard(tenant: str) -> int:
    """The shard of a tenant's jobs, comparisons and directions: the same in every process (CRC-32, not
    Python's salted `hash`)."""
    return zlib.crc32(tenant.encode()) % SHARDS


def job_shard(job_id: str) -> int:
    """The shard a job's id names: its last hex digit (`records.new_job_id` picks it from the tenant's
    shard), so that a worker holding only the id finds the record. An id of another form (none is made
    here) gets a shard from its CRC-32."""
    last = job_id[-1:]
    if last and last in _HEX:
        return _HEX.index(last) % SHARDS
    return zlib.crc32(job_id.encode()) % SHARDS


def shard_of_key(key: str) -> int:
    """The shard of a key made here (a record listed in `dispatch`)."""
    match = _SHARD_TAG.match(key)
    if match is None or match.group(1) not in SHARD_TAGS:
        raise ValueError(f"{key!r} is not a key of a job-state shard")
    return SHARD_TAGS.index(match.group(1))


def job_record_key(job_id: str) -> str:
    return f"{shard_prefix(job_shard(job_id))}job:{job_id}"


def lease_key(job_id: str) -> str:
    return f"{job_record_key(job_id)}:lease"


def events_channel(job_id: str) -> str:
    return f"{job_record_key(job_id)}:events"


def _tenant_shard_prefix(tenant: str) -> str:
    return shard_prefix(tenant_shard(tenant))


def tenant_index(tenant: str, status: JobStatus | None = None) -> str:
    base = f"{_tenant_shard_prefix(tenant)}tenant:{tenant}:jobs"
    return base if status is None else f"{base}:{status.value}"


def idempotency_key(tenant: str, key: str) -> str:
    return f"{_tenant_shard_prefix(tenant)}idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"


def tenant_prefix(tenant: str) -> str:
    """The prefix of a tenant's library, with the tenant's own hash tag."""
    return f"vsteer:{{{tenant}}}:"


def asset_record_key(tenant: str, asset_id: str) -> str:
    return f"{tenant_prefix(tenant)}asset:{asset_id}"


def anchor_record_key(tenant: str, anchor_id: str) -> str:
    return f"{tenant_prefix(tenant)}anchor:{anchor_id}"


def asset_index(tenant: str) -> str:
    return f"{tenant_prefix(tenant)}assets"


def direction_record_key(tenant: str, direction_id: str) -> str:
    return f"{_tenant_shard_prefix(tenant)}direction:{tenant}:{direction_id}"


def direction_index_key(tenant: str) -> str:
    return f"{_tenant_shard_prefix(tenant)}directions:{tenant}"


def anchor_index(tenant: str) -> str:
    return f"{tenant_prefix(tenant)}anchors"


def comparison_record_key(tenant: str, comparison_id: str) -> str:
    return f"{_tenant_shard_prefix(tenant)}comparison:{tenant}:{comparison_id}"


def rate_limit_key(subject: str, tenant: str) -> str:
    """An API key's bucket, in its tenant's shard: the create script takes a submission's token from it."""
    return f"{_tenant_shard_prefix(tenant)}ratelimit:{subject}"


def warm_key(model: str) -> str:
    return f"{PREFIX}model:{model}:warm"


def model_running_key(model: str, shard: int) -> str:
    return f"{shard_prefix(shard)}model:{model}:running"


def running_jobs_key(shard: int) -> str:
    return f"{shard_prefix(shard)}jobs:running"


def active_comparisons_key(shard: int) -> str:
    return f"{shard_prefix(shard)}comparisons:active"


def dispatch_key(shard: int) -> str:
    return f"{shard_prefix(shard)}dispatch"


def no_key(shard: int) -> str:
    """Stands in `KEYS` for a key a script is not given this time (no idempotency key, no rate limit):
    it has the shard's tag, so the script's keys still share one slot, and no script writes it. Scripts
    know it by its ending, `}:none`."""
    return f"{shard_prefix(shard)}none"


# kombu's Redis transport (`kombu.transport.redis.Channel.unacked_key`, `unacked_index_key`), no key prefix.
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"


def status_stats_key(shard: int) -> str:
    return f"{shard_prefix(shard)}stats:status"


def duration_stats(status: str, shard: int) -> str:
    return f"{shard_prefix(shard)}stats:duration:{status}"


def step_stats(model: str) -> str:
    return f"{PREFIX}stats:step:{model}"


def gpu_memory_key(model: str) -> str:
    return f"{PREFIX}model:{model}:gpu_memory"
