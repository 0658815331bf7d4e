"""Every Lua script is Redis Cluster-safe, read statically: each key it touches comes from `KEYS` (no
key built from a prefix, read from a record or passed in `ARGV`, no `KEYS`/`SCAN` command), and the
key builders of what one script touches hash to one slot (`redis.crc.key_slot`). The cluster suite
(`test_cluster.py`) runs them all on a real cluster; this finds the mistake without one.
"""

import re
from pathlib import Path

import pytest
from redis.crc import key_slot

from api_schemas import JobStatus
from jobstate import redis_keys as k
from jobstate.operations import job_keys
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
    assert len(job_keys("job_x", "t1", "m")) == len(MOVE_KEYS) == 14
    keys = job_keys("job_x", "t1", "m")
    assert keys[MOVE_KEYS.index("job")] == k.job_record_key("job_x")
    assert keys[MOVE_KEYS.index("lease")] == k.lease_key("job_x")
    assert keys[MOVE_KEYS.index("model_running")] == k.model_running_key("m")
    for status in JobStatus:
        assert keys[MOVE_KEYS.index(f"index_{status.value}")] == k.tenant_index("t1", status)
    for status in ("succeeded", "failed", "canceled"):
        assert keys[MOVE_KEYS.index(f"duration_{status}")] == k.duration_stats(status)
    assert keys[MOVE_KEYS.index("dispatch")] == k.DISPATCH


def slots(*keys: str) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


@pytest.mark.parametrize("tenant", ["t1", "acme-prod", "x}y", ""])
def test_job_state_keys_share_one_slot(tenant: str) -> None:
    together = [
        *job_keys("job_a", tenant, "svd-xt"),
        *job_keys("job_b", "another", "svd"),
        k.idempotency_key(tenant, "key"),
        k.rate_limit_key("sha"),
        k.tenant_index(tenant),
        k.NO_KEY,
        k.RUNNING_JOBS,
        k.ACTIVE_COMPARISONS,
        k.comparison_record_key(tenant, "cmp_1"),
        k.step_stats("svd-xt"),
        k.warm_key("svd-xt"),
        k.gpu_memory_key("svd-xt"),
        k.direction_record_key(tenant, "dir_1"),
    ]
    assert len(slots(*together)) == 1


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
