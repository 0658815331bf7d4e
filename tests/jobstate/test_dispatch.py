"""Queueing a task in steps (`jobstate.dispatch`): a process that dies between the job-state script
and the push onto the broker's list loses no job; the reaper's next scan pushes the task, once."""

import json
import time

import redis

from api_schemas import JobStatus
from jobstate import dispatch
from jobstate.operations import create_op, reap_op
from jobstate.records import new_job_id
from jobstate.redis_keys import DISPATCH, KOMBU_UNACKED, KOMBU_UNACKED_INDEX, job_record_key
from jobstate.store import JobStore
from jobstate.task_message import task_message

QUEUE = "gpu.svd-xt"


def later() -> float:
    """A time past the grace of anything listed in `dispatch` now."""
    return time.time() + dispatch.GRACE_S + 1


def first_step_only(store: JobStore, flow) -> None:  # type: ignore[no-untyped-def]
    """Run a flow's first step, then drop it: its process died there."""
    store.run(next(flow))
    flow.close()


def test_a_create_that_died_before_its_push_is_pushed_by_the_next_scan(store: JobStore, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    job_id = new_job_id()
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
    first_step_only(store, create_op(job_id, "t1", "svd-xt", {}, task=task))
    assert store.get("t1", job_id).status is JobStatus.queued and r.llen(QUEUE) == 0
    assert store.run(dispatch.redispatch()) == 0  # not before the grace: a live create is still pushing
    assert store.run(dispatch.redispatch(now=later())) == 1
    assert [m.decode() for m in r.lrange(QUEUE, 0, -1)] == [task.payload]
    assert r.zcard(DISPATCH) == 0
    assert store.run(dispatch.redispatch(now=later())) == 0


def test_a_push_whose_last_step_was_lost_is_not_pushed_again(store: JobStore, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    job_id = new_job_id()
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
    assert store.create(job_id, "t1", "svd-xt", {}, task=task).created
    r.zadd(DISPATCH, {job_record_key(job_id): time.time()})  # as if step 3 never ran
    store.run(dispatch.redispatch(now=later()))
    assert r.llen(QUEUE) == 1 and r.zcard(DISPATCH) == 0


def test_a_requeue_that_died_before_its_push_comes_back_from_unacked(store: JobStore, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    job_id = new_job_id()
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
    for _ in range(3):  # redispatch's read, the running set, the scan
        step = flow.send(store.run(step))
    assert step.script == "reap_job"
    store.run(step)
    flow.close()
    assert store.get("t1", job_id).status is JobStatus.queued and r.llen(QUEUE) == 0
    store.run(dispatch.redispatch(now=later()))
    assert [m.decode() for m in r.lrange(QUEUE, 0, -1)] == [message]
    assert r.hlen(KOMBU_UNACKED) == 0 and r.zcard(KOMBU_UNACKED_INDEX) == 0
