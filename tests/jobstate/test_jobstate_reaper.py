"""The reaper's Lua against a real redis-server: a running job whose worker's lease expired goes back
to its queue once, with its own task message, counted toward the poison limit; a live worker keeps
its job; a late worker is refused; a cancel of a job whose worker was lost ends it at once."""

import json
import threading
import time

import anyio
import pytest
import redis

from api_schemas import JobStatus
from jobstate.config import JobStateSettings
from jobstate.reaper import reap_once
from jobstate.records import StoredResult, new_job_id
from jobstate.redis_keys import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, lease_key, running_jobs_key, tenant_shard
from jobstate.store import AsyncJobStore, JobStore
from jobstate.task_message import task_message

QUEUE = "gpu.svd-xt"
REQUEST = {"model": "svd-xt", "image": "asset:abc", "seed": 1}
LEASE_S = 0.3


def submit(store: JobStore) -> str:
    job_id = new_job_id("t1")
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
    store.create(job_id, "t1", "svd-xt", REQUEST, task=task)
    return job_id


def deliver(r: redis.Redis) -> str:
    """What kombu's Redis transport does when a worker takes a message with acks late: off the queue's
    consuming end, into `unacked` under its delivery tag. Returns the message."""
    message = r.rpop(QUEUE).decode()
    tag = json.loads(message)["properties"]["delivery_tag"]
    r.hset(KOMBU_UNACKED, tag, json.dumps([json.loads(message), "", QUEUE]))
    r.zadd(KOMBU_UNACKED_INDEX, {tag: time.time()})
    return message


def expire(job_id: str, r: redis.Redis) -> None:
    """Wait until the job's lease is gone, as when its worker stopped renewing it."""
    deadline = time.monotonic() + 5
    while r.exists(lease_key(job_id)):
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_a_lost_workers_job_goes_back_to_its_queue_once_with_its_own_message(store: JobStore, r: redis.Redis):
    job_id = submit(store)
    message = deliver(r)
    assert store.mark_running(job_id, "w1:1:aa", LEASE_S).applied
    assert store.reap(3) == []  # the lease is live
    expire(job_id, r)

    found = store.reap(3)
    assert [(f.job_id, f.outcome, f.attempts, f.worker) for f in found] == [(job_id, "requeued", 1, "w1:1:aa")]
    record = store.get("t1", job_id)
    assert record.status is JobStatus.queued and record.attempts == 1  # the lost run still counts
    assert [m.decode() for m in r.lrange(QUEUE, 0, -1)] == [message]
    assert r.hlen(KOMBU_UNACKED) == 0 and r.zcard(KOMBU_UNACKED_INDEX) == 0
    assert r.scard(running_jobs_key(tenant_shard("t1"))) == 0
    assert store.list_jobs("t1", status=JobStatus.queued).records[0].id == job_id
    # a second scan, or a second reaper, finds nothing more to do
    assert store.reap(3) == []
    assert r.llen(QUEUE) == 1

    # the next worker claims it as a new run
    deliver(r)
    again = store.mark_running(job_id, "w2:2:bb", LEASE_S)
    assert again.applied and again.record.attempts == 2


def test_the_late_worker_is_refused_once_its_job_was_taken_back(store: JobStore, r: redis.Redis):
    job_id = submit(store)
    deliver(r)
    store.mark_running(job_id, "late:1:aa", LEASE_S)
    expire(job_id, r)
    store.reap(3)
    assert store.progress(job_id, "denoise", 5, 10, owner="late:1:aa").taken_back
    assert not store.renew_lease(job_id, "late:1:aa", LEASE_S)
    assert not store.succeed(job_id, StoredResult(), owner="late:1:aa").applied
    deliver(r)
    store.mark_running(job_id, "next:2:bb", 30)
    ack = store.progress(job_id, "denoise", 1, 10, owner="late:1:aa")
    assert ack.taken_back and not ack.written
    assert not store.succeed(job_id, StoredResult(), owner="late:1:aa").applied
    assert store.progress(job_id, "denoise", 1, 10, owner="next:2:bb").written
    assert store.succeed(job_id, StoredResult(), owner="next:2:bb").applied


def test_a_live_worker_keeps_its_job_and_a_duplicate_delivery_is_refused(store: JobStore, r: redis.Redis):
    job_id = submit(store)
    deliver(r)
    store.mark_running(job_id, "w1:1:aa", LEASE_S)
    for _ in range(4):  # renewed past several lease lengths
        time.sleep(LEASE_S / 2)
        assert store.renew_lease(job_id, "w1:1:aa", LEASE_S)
        assert store.reap(3) == []
    busy = store.mark_running(job_id, "w2:2:bb", LEASE_S)
    assert not busy.applied and busy.record.status is JobStatus.running and busy.record.attempts == 1
    assert store.lease_holder(job_id) == "w1:1:aa"
    # the holder itself may take back a job it handed to the broker (Redis was down at its end)
    assert store.mark_running(job_id, "w1:1:aa", 30).applied
    # a job claimed without a worker (no lease) is never reaped
    other = submit(store)
    store.mark_running(other)
    time.sleep(LEASE_S)
    assert [f.job_id for f in store.reap(3)] == []


def test_a_job_that_keeps_losing_its_worker_is_failed_as_a_poison_job(redis_url: str, store: JobStore, r):
    job_id = submit(store)
    for run in (1, 2):
        deliver(r)
        store.mark_running(job_id, f"w{run}:1:aa", LEASE_S)
        expire(job_id, r)
        if run == 1:
            assert [f.outcome for f in store.reap(2)] == ["requeued"]

    async def main():
        astore = AsyncJobStore.from_url(redis_url)
        try:
            return await reap_once(astore, 2), await reap_once(astore, 2)
        finally:
            await astore.redis.aclose()

    (found, failed), (again, failed_again) = anyio.run(main)
    assert [(f.outcome, f.attempts) for f in found] == [("poison", 2)]
    assert [f.id for f in failed] == [job_id] and (again, failed_again) == ([], [])
    record = store.get("t1", job_id)
    assert record.status is JobStatus.failed and record.error.type.endswith("/worker-lost")
    assert "started 2 times" in record.error.detail
    assert r.llen(QUEUE) == 0


def test_cancel_of_a_job_whose_worker_was_lost_ends_it_at_once(store: JobStore, r: redis.Redis):
    live, lost = submit(store), submit(store)
    deliver(r)
    deliver(r)
    store.mark_running(live, "w1:1:aa", 30)
    store.mark_running(lost, "w2:2:bb", LEASE_S)
    assert store.request_cancel(live)[0] == "requested"
    assert store.get("t1", live).status is JobStatus.running
    expire(lost, r)
    outcome, record = store.request_cancel(lost)
    assert outcome == "canceled" and record.status is JobStatus.canceled
    assert r.hlen(KOMBU_UNACKED) == 1  # only the live worker's message is still out
    assert [f.job_id for f in store.reap(3)] == []


def test_reapers_racing_queue_each_job_exactly_once(store: JobStore, r: redis.Redis, redis_url: str):
    jobs = [submit(store) for _ in range(30)]
    for job_id in jobs:
        deliver(r)
        store.mark_running(job_id, "w1:1:aa", LEASE_S)
    for job_id in jobs:
        expire(job_id, r)
    results: list = []
    stores = [JobStore.from_url(redis_url) for _ in range(4)]
    threads = [threading.Thread(target=lambda s=s: results.extend(s.reap(3))) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(f.job_id for f in results) == sorted(jobs)
    assert r.llen(QUEUE) == len(jobs) and len(set(r.lrange(QUEUE, 0, -1))) == len(jobs)
    assert r.hlen(KOMBU_UNACKED) == 0


def test_the_lease_must_outlive_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="VSTEER_WORKER_LOST_AFTER_S must be at least twice VSTEER_HEARTBEAT_S"):
        JobStateSettings(heartbeat_s=10, worker_lost_after_s=15)
    defaults = JobStateSettings()
    # a dead worker's job is queued again within a minute at the defaults
    assert defaults.worker_lost_after_s + defaults.reap_every_s <= 60


def test_a_cancel_asked_while_the_worker_died_ends_the_job_when_its_lease_expires(
    redis_url: str, store: JobStore, r: redis.Redis
):
    job_id = submit(store)
    deliver(r)
    store.mark_running(job_id, "w1:1:aa", LEASE_S)
    assert store.request_cancel(job_id)[0] == "requested"  # the lease is still live
    expire(job_id, r)

    async def main():
        astore = AsyncJobStore.from_url(redis_url)
        try:
            return await reap_once(astore, 3)
        finally:
            await astore.redis.aclose()

    found, ended = anyio.run(main)
    assert [f.outcome for f in found] == ["canceled"]
    assert [(e.id, e.status) for e in ended] == [(job_id, JobStatus.canceled)]
    assert r.llen(QUEUE) == 0 and r.hlen(KOMBU_UNACKED) == 0


def test_a_lapsed_lease_is_renewed_while_no_reaper_took_the_job(store: JobStore, r: redis.Redis):
    # Redis was unreachable for longer than a lease: the worker's next heartbeat restores it
    job_id = submit(store)
    deliver(r)
    store.mark_running(job_id, "w1:1:aa", LEASE_S)
    expire(job_id, r)
    assert store.renew_lease(job_id, "w1:1:aa", 30)
    assert store.reap(3) == [] and store.lease_holder(job_id) == "w1:1:aa"
    assert not store.renew_lease(job_id, "w2:2:bb", 30)
