"""The task message written by the create script: what kombu would write, and what a worker runs."""

import base64
import json
import threading
import time

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker

from jobstate.errors import RateLimited, TooManyActiveJobs
from jobstate.operations import Created, RateLimit, create_op
from jobstate.records import new_job_id
from jobstate.redis_keys import rate_limit_key
from jobstate.steps import Flow
from jobstate.store import JobStore
from jobstate.task_message import task_message

KWARGS = {"job_id": "job_x", "tenant": "t1"}


def kombu_message(redis_url: str, name: str, queue: str) -> dict:
    """The message `send_task` writes, read back from the queue's list."""
    producer = Celery("producer", broker=redis_url, set_as_current=False)
    try:
        producer.send_task(name, kwargs=KWARGS, queue=queue)
    finally:
        producer.close()
    (raw,) = redis.Redis.from_url(redis_url).lrange(queue, 0, -1)
    return json.loads(raw)


def test_the_message_is_the_one_send_task_writes(redis_url: str) -> None:
    theirs = kombu_message(redis_url, "vsteer.example.v1", "gpu.m")
    mine_msg = task_message("vsteer.example.v1", KWARGS, "gpu.m")
    mine = json.loads(mine_msg.payload)
    assert mine_msg.list_key == "gpu.m"
    assert mine.keys() == theirs.keys()
    assert mine["headers"].keys() == theirs["headers"].keys()
    # reply_to only matters to a result backend, which job tasks do not use.
    assert mine["properties"].keys() == theirs["properties"].keys() - {"reply_to"}
    assert base64.b64decode(mine["body"]) == base64.b64decode(theirs["body"])
    same = ("content-encoding", "content-type")
    assert {k: mine[k] for k in same} == {k: theirs[k] for k in same}
    moving = {"id", "root_id", "origin"}  # per message
    assert {k: v for k, v in mine["headers"].items() if k not in moving} == {
        k: v for k, v in theirs["headers"].items() if k not in moving
    }
    for prop in ("delivery_info", "priority", "body_encoding", "delivery_mode"):
        assert mine["properties"][prop] == theirs["properties"][prop]


def test_a_celery_worker_runs_the_message(redis_url: str) -> None:
    app = Celery("consumer", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue="gpu.m", worker_hijack_root_logger=False, broker_connection_retry=False)
    seen: list[dict] = []
    done = threading.Event()

    @app.task(name="vsteer.example.v1")
    def example(job_id: str, tenant: str) -> None:
        seen.append({"job_id": job_id, "tenant": tenant})
        done.set()

    message = task_message("vsteer.example.v1", KWARGS, "gpu.m", task_id="job_x")
    redis.Redis.from_url(redis_url).lpush(message.list_key, message.payload)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert done.wait(20), "the worker never ran the task"
    assert seen == [KWARGS]


def queued(redis_url: str, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in redis.Redis.from_url(redis_url).lrange(queue, 0, -1)]


def test_create_queues_the_task_once(store: JobStore, redis_url: str) -> None:
    job_id = new_job_id("t1")
    task = task_message("vsteer.example.v1", {"job_id": job_id, "tenant": "t1"}, "gpu.m", task_id=job_id)
    assert store.create(job_id, "t1", "m", {}, idempotency=("k", "h"), task=task).created
    # a replay of the same request returns the job and queues nothing more
    again = store.create(new_job_id("t1"), "t1", "m", {}, idempotency=("k", "h"), task=task)
    assert not again.created and again.record.id == job_id
    (message,) = queued(redis_url, "gpu.m")
    assert message["headers"]["id"] == job_id


def test_a_refused_job_queues_nothing(store: JobStore, redis_url: str) -> None:
    store.create(new_job_id("t1"), "t1", "m", {}, max_active=1)
    refused = new_job_id("t1")
    with pytest.raises(TooManyActiveJobs):
        store.create(refused, "t1", "m", {}, max_active=1, task=task_message("x", {}, "gpu.m", task_id=refused))
    assert queued(redis_url, "gpu.m") == []


def test_a_retried_create_script_is_its_own_earlier_run(store: JobStore, redis_url: str) -> None:
    # A client that lost the reply and sent the same call again gets the job, not an error, and
    # neither a second task nor a second token is taken.
    job_id = new_job_id("t1")
    task = task_message("vsteer.example.v1", {"job_id": job_id, "tenant": "t1"}, "gpu.m", task_id=job_id)
    now = time.time()

    def call() -> Flow[Created]:  # the same call: same arguments, same time
        return create_op(job_id, "t1", "m", {}, task=task, rate=RateLimit("key", rate_per_s=0.001, burst=5), now=now)

    first, again = store.run(call()), store.run(call())
    assert first.created and again.created and again.record == first.record
    assert len(queued(redis_url, "gpu.m")) == 1
    assert float(redis.Redis.from_url(redis_url).hget(rate_limit_key("key", "t1"), "tokens")) == pytest.approx(
        4, abs=0.01
    )
    # the same id from another call is still an error
    with pytest.raises(RuntimeError, match="already exists"):
        store.create(job_id, "t1", "m", {})


def test_a_queue_key_of_another_type_records_nothing(store: JobStore, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).set("gpu.m", "not a list")
    job_id = new_job_id("t1")
    with pytest.raises(redis.ResponseError, match="holds a string"):
        store.create(job_id, "t1", "m", {}, task=task_message("x", {}, "gpu.m", task_id=job_id))
    assert store.get("t1", job_id) is None


def test_a_wait_of_any_length_is_read(store: JobStore) -> None:
    store.create(new_job_id("t1"), "t1", "m", {}, rate=RateLimit("slow", rate_per_s=1e-12, burst=1))
    with pytest.raises(RateLimited) as caught:
        store.create(new_job_id("t1"), "t1", "m", {}, rate=RateLimit("slow", rate_per_s=1e-12, burst=1))
    assert caught.value.retry_after_s > 1e9


def test_the_installed_kombu_is_the_pinned_one_whose_message_the_create_script_writes() -> None:
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    pins = {dep for deps in project["project"]["optional-dependencies"].values() for dep in deps if "kombu" in dep}
    assert pins == {f"kombu=={version('kombu')}"}, pins
