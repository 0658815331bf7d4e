"""The per-model set of running jobs (`model:<name>:running`) against a real redis-server: every move
into and out of `running` keeps it equal to the model's running jobs, whoever makes the move (the
worker, a cancel, the worker's hand-back on shutdown, the reaper, a redelivery). An autoscaler adds its
size to the queue's length (`deploy/k8s`), so a count that drifts up keeps GPUs idle and one that drifts
down scales a worker away in the middle of its job."""

import json
import time

import anyio
import pytest
import redis

from api_schemas import JobStatus, Problem
from jobstate.operations import running_jobs_op
from jobstate.reaper import reap_once
from jobstate.records import StoredResult, new_job_id
from jobstate.redis_keys import (
    KOMBU_UNACKED,
    KOMBU_UNACKED_INDEX,
    SHARD_TAGS,
    lease_key,
    model_running_key,
    tenant_shard,
)
from jobstate.store import AsyncJobStore, JobStore
from jobstate.task_message import task_message

LEASE_S = 0.3


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def submit(store: JobStore, model: str = "svd-xt") -> str:
    job_id = new_job_id("t1")
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, f"gpu.{model}", task_id=job_id)
    store.create(job_id, "t1", model, {"model": model, "image": "asset:abc", "seed": 1}, task=task)
    return job_id


def deliver(r: redis.Redis, model: str = "svd-xt") -> None:
    """kombu's delivery with acks late: off the queue's consuming end into `unacked`."""
    queue = f"gpu.{model}"
    message = r.rpop(queue).decode()
    tag = json.loads(message)["properties"]["delivery_tag"]
    r.hset(KOMBU_UNACKED, tag, json.dumps([json.loads(message), "", queue]))
    r.zadd(KOMBU_UNACKED_INDEX, {tag: time.time()})


def expire(job_id: str, r: redis.Redis) -> None:
    deadline = time.monotonic() + 5
    while r.exists(lease_key(job_id)):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def running(store: JobStore, model: str = "svd-xt") -> list[str]:
    return store.run(running_jobs_op(model))


def problem() -> Problem:
    return Problem(type="about:blank", title="Broken", status=500, detail="test", instance="/v1/jobs/x")


def test_the_key_is_a_set_that_the_autoscalers_redis_scaler_can_count(store: JobStore, r: redis.Redis):
    job_id = submit(store)
    store.mark_running(job_id, "w1:1:aa", 30)
    key = model_running_key("svd-xt", tenant_shard("t1"))
    # KEDA's redis trigger counts a set with SCARD (and a list with LLEN): the key is read as is, one
    # trigger per shard (`deploy/k8s`), and the job is in its tenant's shard's set.
    assert key == f"{{{SHARD_TAGS[tenant_shard('t1')]}}}:model:svd-xt:running"
    assert r.type(key) == b"set" and r.scard(key) == 1


def test_a_worker_run_enters_and_leaves_its_models_set(store: JobStore, r: redis.Redis):
    ok, broken, other = submit(store), submit(store), submit(store, model="tiny")
    assert running(store) == [] and running(store, "tiny") == []

    for job_id in (ok, broken, other):
        store.mark_running(job_id, f"w:{job_id}", 30)
    assert running(store) == sorted([ok, broken]) and running(store, "tiny") == [other]

    # a redelivery claimed again by the same holder is still one running job
    assert store.mark_running(ok, f"w:{ok}", 30).applied
    assert running(store) == sorted([ok, broken])

    assert store.progress(ok, "denoise", 3, 10, owner=f"w:{ok}").written
    assert store.succeed(ok, StoredResult(), owner=f"w:{ok}").applied
    assert store.fail(broken, problem(), owner=f"w:{broken}").applied
    assert running(store) == [] and running(store, "tiny") == [other]
    # a finished job never counts again, whatever is replayed
    assert not store.mark_running(ok, f"w:{ok}", 30).applied
    assert running(store) == []


def test_a_cancel_leaves_the_set_when_the_job_ends(store: JobStore):
    queued, flagged = submit(store), submit(store)
    store.mark_running(flagged, "w1:1:aa", 30)
    assert store.request_cancel(queued)[0] == "canceled"
    assert store.request_cancel(flagged)[0] == "requested"
    assert running(store) == [flagged]  # still running until its worker reads the flag
    assert store.mark_canceled(flagged, owner="w1:1:aa").applied
    assert running(store) == []


def test_a_job_handed_back_on_shutdown_leaves_the_set_and_returns_with_its_next_run(store: JobStore):
    job_id = submit(store)
    store.mark_running(job_id, "w1:1:aa", 30)
    assert store.requeue(job_id, owner="w1:1:aa").applied
    assert store.get_any(job_id).status is JobStatus.queued
    assert running(store) == []
    assert store.mark_running(job_id, "w2:2:bb", 30).applied
    assert running(store) == [job_id]


def test_the_reaper_takes_a_lost_workers_job_out_of_the_set(store: JobStore, r: redis.Redis):
    requeued, canceled = submit(store), submit(store)
    for job_id in (requeued, canceled):
        deliver(r)
        store.mark_running(job_id, f"w:{job_id}", LEASE_S)
    store.request_cancel(canceled)  # the flag is set while the worker is still thought alive
    assert running(store) == sorted([requeued, canceled])
    for job_id in (requeued, canceled):
        expire(job_id, r)

    found = {f.job_id: f.outcome for f in store.reap(3)}
    assert found == {requeued: "requeued", canceled: "canceled"}
    assert running(store) == []
    assert r.llen("gpu.svd-xt") == 1  # the requeued job waits in the queue: the autoscaler still sees it

    # the redelivered message is claimed by the next worker: one running job again
    deliver(r)
    assert store.mark_running(requeued, "w2:2:bb", 30).applied
    assert running(store) == [requeued]


def test_a_lost_worker_whose_job_is_redelivered_before_the_reaper_counts_once(store: JobStore, r: redis.Redis):
    job_id = submit(store)
    deliver(r)
    store.mark_running(job_id, "w1:1:aa", LEASE_S)
    expire(job_id, r)
    # the broker's visibility timeout handed it to another worker first: running → running
    assert store.mark_running(job_id, "w2:2:bb", 30).applied
    assert running(store) == [job_id]
    assert store.reap(3) == []  # the new holder's lease is live
    assert store.succeed(job_id, StoredResult(), owner="w2:2:bb").applied
    assert running(store) == []


def test_a_poison_job_stays_counted_until_the_reaper_fails_it(redis_url: str, store: JobStore, r: redis.Redis):
    job_id = submit(store)
    deliver(r)
    store.mark_running(job_id, "w1:1:aa", LEASE_S)
    expire(job_id, r)

    async def main():
        astore = AsyncJobStore.from_url(redis_url)
        try:
            return await reap_once(astore, 1)
        finally:
            await astore.redis.aclose()

    found, failed = anyio.run(main)
    assert [f.outcome for f in found] == ["poison"] and [f.id for f in failed] == [job_id]
    assert store.get_any(job_id).status is JobStatus.failed
    assert running(store) == []


def test_the_set_equals_the_running_jobs_after_a_mixed_history(store: JobStore, r: redis.Redis):
    jobs = [submit(store, model=("svd-xt", "tiny")[(i // 4) % 2]) for i in range(12)]
    for i, job_id in enumerate(jobs):
        store.mark_running(job_id, f"w:{i}", LEASE_S if i % 4 == 0 else 30)
    for i, job_id in enumerate(jobs):
        if i % 4 == 1:
            store.succeed(job_id, StoredResult(), owner=f"w:{i}")
        elif i % 4 == 2:
            store.requeue(job_id, owner=f"w:{i}")
    for i in range(0, len(jobs), 4):
        expire(jobs[i], r)
    store.reap(3)

    for model in ("svd-xt", "tiny"):
        expected = sorted(
            j for j in jobs if (rec := store.get_any(j)).model == model and rec.status is JobStatus.running
        )
        assert expected  # the history leaves some running (i % 4 == 3)
        assert running(store, model) == expected
