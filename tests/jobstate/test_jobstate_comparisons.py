"""Comparison records on a real redis-server: the composition is queued once, with its task, and
finished once; a canceled comparison is never composed; the status follows the children."""

import json
from datetime import UTC, datetime

from api_schemas import JobStatus
from jobstate.comparisons import (
    Child,
    ComparisonRecord,
    cancel_comparison_op,
    comparison_status,
    compose_comparison_op,
    composition_ready,
    finish_comparison_op,
    get_comparison_op,
    put_comparison_op,
    settled_op,
)
from jobstate.queues import COMPOSE_COMPARISON_TASK, CPU_QUEUE
from jobstate.records import StoredResult, new_job_id
from jobstate.redis_keys import active_comparisons_key, comparison_record_key, tenant_shard
from jobstate.store import JobStore, failure

TENANT = "acme"
# the children's ids, in the tenant's shard as the API makes them
JOB_A, JOB_B = new_job_id(TENANT), new_job_id(TENANT)


def comparison(store: JobStore, ident: str = "cmp_0000000000000000000000000001", retain_s: int = 0) -> ComparisonRecord:
    record = ComparisonRecord(
        id=ident,
        tenant=TENANT,
        request={"models": ["a", "b"], "job": {"seed": 4}},
        seed=4,
        children=[Child("a", JOB_A), Child("b", JOB_B)],
        created_at=datetime.now(UTC),
    )
    store.run(put_comparison_op(record, retain_s=retain_s))
    stored = store.run(get_comparison_op(TENANT, ident))
    assert stored is not None
    return stored


def queued_tasks(store: JobStore) -> list[dict]:
    return [json.loads(m)["headers"] for m in store.redis.lrange(CPU_QUEUE, 0, -1)]


def test_a_comparison_reads_back_and_another_tenant_has_none(store: JobStore):
    record = comparison(store)
    assert record.seed == 4 and [c.model for c in record.children] == ["a", "b"]
    assert store.run(get_comparison_op("globex", record.id)) is None


def test_the_composition_is_queued_once_with_its_task(store: JobStore):
    record = comparison(store)
    assert store.run(compose_comparison_op(TENANT, record.id)) is True
    assert store.run(compose_comparison_op(TENANT, record.id)) is False  # a second request, another process
    tasks = queued_tasks(store)
    assert [t["task"] for t in tasks] == [COMPOSE_COMPARISON_TASK]
    assert store.run(get_comparison_op(TENANT, record.id)).compose == "queued"


def test_the_outcome_is_recorded_once(store: JobStore):
    record = comparison(store)
    assert store.run(finish_comparison_op(TENANT, record.id, result={"table": []})) is False  # not queued yet
    store.run(compose_comparison_op(TENANT, record.id))
    assert store.run(finish_comparison_op(TENANT, record.id, result={"table": []})) is True
    late = failure("Composition failed", "a redelivery that failed")
    assert store.run(finish_comparison_op(TENANT, record.id, error=late)) is False
    done = store.run(get_comparison_op(TENANT, record.id))
    assert done.compose == "succeeded" and done.error is None and done.finished_at is not None


def test_a_canceled_comparison_is_never_composed(store: JobStore):
    record = comparison(store)
    assert store.run(cancel_comparison_op(TENANT, record.id)) is True
    assert store.run(compose_comparison_op(TENANT, record.id)) is False
    assert queued_tasks(store) == []
    assert store.run(cancel_comparison_op("globex", record.id)) is False


def test_the_status_follows_the_children(store: JobStore):
    record = comparison(store)
    for job_id, model in ((JOB_A, "a"), (JOB_B, "b")):
        store.create(job_id, TENANT, model, {"seed": 4})
    children = [store.get_any(JOB_A), store.get_any(JOB_B)]
    assert comparison_status(record, children) is JobStatus.queued
    store.mark_running(JOB_A)
    store.fail(JOB_A, failure("Out of memory", "too big"))
    children = [store.get_any(JOB_A), store.get_any(JOB_B)]
    assert comparison_status(record, children) is JobStatus.running
    assert not composition_ready(record, children)
    store.mark_running(JOB_B)
    store.succeed(JOB_B, StoredResult())
    children = [store.get_any(JOB_A), store.get_any(JOB_B)]
    assert composition_ready(record, children)  # one succeeded: the side-by-side is made of it
    assert comparison_status(record, children) is JobStatus.running
    # every child failed: nothing to compose, the comparison failed
    assert comparison_status(record, [children[0], None]) is JobStatus.failed
    assert not composition_ready(record, [children[0], None])


def test_a_finished_comparison_expires_after_the_retention(store: JobStore):
    record = comparison(store, retain_s=3600)
    key = comparison_record_key(TENANT, record.id)
    store.run(compose_comparison_op(TENANT, record.id))
    store.run(settled_op(TENANT, record.id))  # settled because its composition is queued: it still runs
    assert store.redis.ttl(key) == -1 and not store.redis.sismember(
        active_comparisons_key(tenant_shard(TENANT)), f"{TENANT}/{record.id}"
    )
    store.run(finish_comparison_op(TENANT, record.id, result={"table": []}))
    assert 3590 <= store.redis.ttl(key) <= 3600


def test_a_comparison_that_ends_without_a_composition_expires_when_settled(store: JobStore):
    failed = comparison(store, "cmp_0000000000000000000000000002", retain_s=60)
    store.run(settled_op(TENANT, failed.id))  # every child failed or was canceled: nothing to compose
    assert 50 <= store.redis.ttl(comparison_record_key(TENANT, failed.id)) <= 60
    kept = comparison(store, "cmp_0000000000000000000000000003")  # no retention configured: kept
    store.run(compose_comparison_op(TENANT, kept.id))
    store.run(finish_comparison_op(TENANT, kept.id, result={"table": []}))
    store.run(settled_op(TENANT, kept.id))
    assert store.redis.ttl(comparison_record_key(TENANT, kept.id)) == -1
