"""Every Lua script is Redis Cluster-safe, read statically: each key it touches comes from `KEYS` (no
key built from a prefix, read from a record or passed in `ARGV`, no `KEYS`/`SCAN` command), and the
key builders of what one script touches hash to one slot (`redis.crc.key_slot`). The cluster suite
(`test_cluster.py`) runs them all on a real cluster; this finds the mistake without one.
"""

import re
import zlib
from pathlib import Path

import pytest
from redis.crc import key_slot

from api_schemas import JobStatus
from jobstate import redis_keys as k
from jobstate.operations import create_op, job_keys
from jobstate.records import JOB_ID_PATTERN, new_job_id
from jobstate.scripts import BROKER_SCRIPTS, MOVE_KEYS, SCRIPTS

ALL = {**SCRIPTS, **BROKER_SCRIPTS}
# commands whose first argument is not a key
NOT_A_KEY = {"PUBLISH", "TIME"}


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()]


def key_variables(source: str) -> set[str]:
    """Names bound to a key: assigned (position by position) from `KEYS[…]` or the `K` table, loop
    variables over `KEYS`, and the bucket parameter of the token helper."""
    names = {"bucket"}
    for lhs, rhs in re.findall(r"local ([\w, ]+?) = ([^\n]+)", source):
        for name, value in zip(_split_top(lhs), _split_top(rhs), strict=False):
            if re.fullmatch(r"(KEYS\[[^\]]+\]|K(\.\w+|\[\w+\])+)", value):
                names.add(name)
    names |= set(re.findall(r"for \w+, (\w+) in ipairs\(KEYS\)", source))
    return names


def first_arguments(source: str) -> list[tuple[str, str]]:
    return re.findall(r"redis\.call\('(\w+)',\s*([^,)]+)", source)


@pytest.mark.parametrize("name", sorted(ALL))
def test_each_key_a_script_touches_comes_from_KEYS(name: str) -> None:
    source = ALL[name]
    variables = key_variables(source)
    calls = first_arguments(source)
    assert calls, f"{name} calls no command"
    for command, first in calls:
        assert command not in ("KEYS", "SCAN"), f"{name} runs {command}: it would touch keys it was not given"
        if command in NOT_A_KEY:
            continue
        given = re.fullmatch(r"KEYS\[[^\]]+\]|K(\.\w+|\[\w+\])+", first) or first in variables
        assert given, f"{name}: {command} {first} is not a key from KEYS"


def test_the_move_table_matches_the_keys_the_callers_build() -> None:
    source = SCRIPTS["transition"]
    table = re.search(r"local K = \{(.*?)dispatch = KEYS\[14\]\}", source, re.S)
    assert table is not None
    job_id = new_job_id("t1")
    shard = k.tenant_shard("t1")
    assert len(job_keys(job_id, "t1", "m")) == len(MOVE_KEYS) == 14
    keys = job_keys(job_id, "t1", "m")
    assert keys[MOVE_KEYS.index("job")] == k.job_record_key(job_id)
    assert keys[MOVE_KEYS.index("lease")] == k.lease_key(job_id)
    assert keys[MOVE_KEYS.index("running")] == k.running_jobs_key(shard)
    assert keys[MOVE_KEYS.index("model_running")] == k.model_running_key("m", shard)
    assert keys[MOVE_KEYS.index("stats")] == k.status_stats_key(shard)
    for status in JobStatus:
        assert keys[MOVE_KEYS.index(f"index_{status.value}")] == k.tenant_index("t1", status)
    for status in ("succeeded", "failed", "canceled"):
        assert keys[MOVE_KEYS.index(f"duration_{status}")] == k.duration_stats(status, shard)
    assert keys[MOVE_KEYS.index("dispatch")] == k.dispatch_key(shard)


def slots(*keys: str) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


@pytest.mark.parametrize("tenant", ["t1", "acme-prod", "x}y", ""])
def test_what_one_step_of_a_tenants_jobs_touches_shares_one_slot(tenant: str) -> None:
    shard = k.tenant_shard(tenant)
    first, second = new_job_id(tenant), new_job_id(tenant)
    together = [
        *job_keys(first, tenant, "svd-xt"),
        *job_keys(second, tenant, "svd"),
        k.idempotency_key(tenant, "key"),
        k.rate_limit_key("sha", tenant),
        k.tenant_index(tenant),
        k.no_key(shard),
        k.active_comparisons_key(shard),
        k.comparison_record_key(tenant, "cmp_1"),
        k.direction_record_key(tenant, "dir_1"),
        k.direction_index_key(tenant),
    ]
    assert len(slots(*together)) == 1
    assert k.job_shard(first) == k.shard_of_key(k.job_record_key(first)) == shard


def test_tenants_jobs_spread_over_the_shards_and_each_shard_has_its_own_slot() -> None:
    # every shard's keys hash to a slot of their own, shard n's in the n-th eighth of the slots: a cluster
    # whose slots are split evenly among up to eight primaries holds job state on every one of them
    shard_slots = [key_slot(k.dispatch_key(shard).encode()) for shard in range(k.SHARDS)]
    assert [slot * k.SHARDS // 16384 for slot in shard_slots] == list(range(k.SHARDS))
    for primaries in range(1, k.SHARDS + 1):
        # `redis-cli --cluster create` gives primary i the slots from i * 16384 / primaries on
        owners = {slot * primaries // 16384 for slot in shard_slots}
        assert owners == set(range(primaries)), primaries
    # tenants are spread over all of them, as their jobs are (the id names its tenant's shard)
    tenants = [f"tenant-{i}" for i in range(200)]
    assert {k.tenant_shard(t) for t in tenants} == set(range(k.SHARDS))
    assert len(slots(*(k.job_record_key(new_job_id(t)) for t in tenants))) == k.SHARDS
    # what belongs to no tenant (one key per command) keeps the unsharded tag
    assert len(slots(k.step_stats("svd-xt"), k.warm_key("svd-xt"), k.gpu_memory_key("svd-xt"))) == 1


def test_a_job_whose_id_names_another_shard_is_refused_before_any_write() -> None:
    other = next(t for t in (f"t{i}" for i in range(100)) if k.tenant_shard(t) != k.tenant_shard("t1"))
    with pytest.raises(ValueError, match="new_job_id"):
        next(create_op(new_job_id(other), "t1", "svd-xt", {}))
    with pytest.raises(ValueError, match="needs a tenant"):
        next(create_op(new_job_id(""), "", "svd-xt", {}))


def test_a_job_id_made_for_a_tenant_names_its_shard_whatever_its_random_part() -> None:
    for tenant in ("t1", "acme-prod", ""):
        ids = {new_job_id(tenant) for _ in range(64)}
        assert len(ids) == 64 and {k.job_shard(i) for i in ids} == {k.tenant_shard(tenant)}
        assert all(re.fullmatch(JOB_ID_PATTERN, i) for i in ids)
    # the shard is read from the id alone, so it is the same in every process
    assert k.job_shard("job_0000000000000000000000000009") == 9 % k.SHARDS
    assert k.tenant_shard("t1") == zlib.crc32(b"t1") % k.SHARDS


@pytest.mark.parametrize("tenant", ["t1", "acme-prod", "x}y"])
def test_a_tenants_library_shares_one_slot(tenant: str) -> None:
    mine = slots(
        k.asset_record_key(tenant, "ast_1"),
        k.asset_record_key(tenant, "ast_2"),
        k.asset_index(tenant),
        k.anchor_record_key(tenant, "anc_1"),
        k.anchor_index(tenant),
    )
    assert len(mine) == 1


def test_every_script_an_operation_names_exists() -> None:
    root = Path(__file__).resolve().parents[2] / "jobstate"
    named = set()
    for path in root.glob("*.py"):
        source = path.read_text()
        named |= set(re.findall(r'script="(\w+)"', source)) | set(re.findall(r'_moving\(job_id, "(\w+)"', source))
    assert named == set(ALL), named ^ set(ALL)
