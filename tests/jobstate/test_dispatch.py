"""Queueing a task in steps (`jobstate.dispatch`): a process that dies between the job-state script
and the push onto the broker's list loses no job; the reaper's next scan pushes the task, once."""

import json
import time

import redis

from api_schemas import JobStatus
from jobstate import dispatch
from jobstate.operations import create_op, reap_op
from jobstate.records import new_job_id
from jobstate.redis_keys import KOMBU_UNACKED, KOMBU_UNACKED_INDEX, dispatch_key, job_record_key, tenant_shard
from jobstate.store import JobStore
from jobstate.task_message import task_message

QUEUE = "gpu.svd-xt"
SHARD = tenant_shard("t1")  # the tests' jobs are t1's


def later() -> float:
    """A time past the grace of anything listed in `dispatch` now."""
    return time.time() + dispatch.GRACE_S + 1


def first_step_only(store: JobStore, flow) -> None:  # type: ignore[no-untyped-def]
    """Run a flow's first step, then drop it: its process died there."""
    store.run(next(flow))
    flow.close()


def test_a_create_that_died_before_its_push_is_pushed_by_the_next_scan(store: JobStore, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    job_id = new_job_id("t1")
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
    first_step_only(store, create_op(job_id, "t1", "svd-xt", {}, task=task))
    assert store.get("t1", job_id).status is JobStatus.queued and r.llen(QUEUE) == 0
    assert store.run(dispatch.redispatch(SHARD)) == 0  # not before the grace: a live create is still pushing
    assert store.run(dispatch.redispatch(SHARD, now=later())) == 1
    assert [m.decode() for m in r.lrange(QUEUE, 0, -1)] == [task.payload]
    assert r.zcard(dispatch_key(SHARD)) == 0
    assert store.run(dispatch.redispatch(SHARD, now=later())) == 0


def test_a_push_whose_last_step_was_lost_is_not_pushed_again(store: JobStore, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    job_id = new_job_id("t1")
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
    assert store.create(job_id, "t1", "svd-xt", {}, task=task).created
    r.zadd(dispatch_key(SHARD), {job_record_key(job_id): time.time()})  # as if step 3 never ran
    store.run(dispatch.redispatch(SHARD, now=later()))
    assert r.llen(QUEUE) == 1 and r.zcard(dispatch_key(SHARD)) == 0


def test_a_requeue_that_died_before_its_push_comes_back_from_unacked(store: JobStore, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    job_id = new_job_id("t1")
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
    assert store.create(job_id, "t1", "svd-xt", {}, task=task).created
    message = r.rpop(QUEUE).decode()
    tag = json.loads(message)["properties"]["delivery_tag"]
    r.hset(KOMBU_UNACKED, tag, json.dumps([json.loads(message), "", QUEUE]))
    r.zadd(KOMBU_UNACKED_INDEX, {tag: time.time()})
    assert store.mark_running(job_id, "w1:1:aa", 0.05).applied
    time.sleep(0.1)
    # the reaper's process dies after the job-state step (the job is queued again) and before the push
    flow = reap_op(3)
    step = next(flow)
    while step.script != "reap_job":  # per shard: redispatch's read, the running set, the scan
        step = flow.send(store.run(step))
    store.run(step)
    flow.close()
    assert store.get("t1", job_id).status is JobStatus.queued and r.llen(QUEUE) == 0
    store.run(dispatch.redispatch(SHARD, now=later()))
    assert [m.decode() for m in r.lrange(QUEUE, 0, -1)] == [message]
    assert r.hlen(KOMBU_UNACKED) == 0 and r.zcard(KOMBU_UNACKED_INDEX) == 0


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends (a script's EVALSHA is one)."""

    sent = 0

    def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        type(self).sent += 1
        return super().execute_command(*args, **options)


def submissions(store: JobStore, r: redis.Redis) -> int:
    """Commands of a second create (the first loads the scripts), after which its task is queued and
    nothing is left in `dispatch`."""
    for _ in range(2):
        job_id = new_job_id("t1")
        task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
        CountingRedis.sent = 0
        store.create(job_id, "t1", "svd-xt", {}, task=task)
        assert r.lindex(QUEUE, 0).decode() == task.payload and r.zcard(dispatch_key(SHARD)) == 0
    return CountingRedis.sent


def test_on_one_redis_a_task_is_pushed_and_taken_off_dispatch_in_one_round_trip(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    # the create script, then the push with the removal: two round trips
    assert submissions(JobStore(CountingRedis.from_url(redis_url)), r) == 2
    # with a broker of its own (a cluster's job state, say), the removal is a third
    apart = JobStore(CountingRedis.from_url(redis_url), broker=CountingRedis.from_url(redis_url))
    assert submissions(apart, r) == 3


def test_a_push_refused_on_one_redis_takes_the_job_back_and_leaves_nothing_listed(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set(QUEUE, "not a list")
    store = JobStore.from_url(redis_url)
    job_id = new_job_id("t1")
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
    try:
        store.create(job_id, "t1", "svd-xt", {}, task=task)
    except redis.ResponseError as exc:
        assert "holds a string" in str(exc)
    else:
        raise AssertionError("the push onto a key of another type was not refused")
    assert store.get("t1", job_id) is None and r.zcard(dispatch_key(SHARD)) == 0
