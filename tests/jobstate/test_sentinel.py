"""Job state through `redis+sentinel://` across a real failover: a primary, a replica and three
Sentinels on loopback; the primary is SIGKILLed with jobs queued and running, the Sentinels promote
the replica, and the same store (no new client, no new URL) goes on: every job ends `succeeded`,
each counted once, and the job whose worker died with the primary is found by the reaper.

The kill comes once the replica has caught up with what the test wrote: Redis replicates
asynchronously, and a write acknowledged in the instant before a primary dies can be lost with it
(`docs/reliability.md`, "Cluster and Sentinel"); this test is about the failover path, not that window.
"""

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
import redis

from api_schemas import JobStatus
from jobstate.records import StoredArtifact, StoredResult, new_job_id
from jobstate.store import AsyncJobStore, JobStore
from jobstate.task_message import task_message
from tests.redis_topologies import SentinelGroup, start_sentinel_group, wait_for_failover

pytestmark = pytest.mark.integration

T = TypeVar("T")
QUEUE = "gpu.svd-xt"
RESULT = StoredResult(video=StoredArtifact(key="jobs/t1/x/video.mp4", content_type="video/mp4", bytes=3))


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    started = start_sentinel_group(tmp_path)
    yield started
    started.stop()


def retried(call: Callable[[], T], timeout_s: float = 20.0) -> T:
    """`call` until the promoted primary answers (a worker's state writes are retried the same way)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def replicated(group: SentinelGroup) -> bool:
    primary = redis.Redis(port=group.primary_port).info("replication")
    return int(redis.Redis(port=group.replica_port).info("replication")["master_repl_offset"]) >= int(
        primary["master_repl_offset"]
    )


def test_jobs_queued_and_running_survive_a_primary_failover(group: SentinelGroup) -> None:
    store = JobStore.from_url(group.url, socket_timeout=1, socket_connect_timeout=1)
    assert store.redis.connection_pool.get_master_address()[1] == group.primary_port
    jobs = []
    for _ in range(10):
        job_id = new_job_id("t1")
        task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "t1"}, QUEUE, task_id=job_id)
        assert store.create(job_id, "t1", "svd-xt", {"seed": 1}, task=task).created
        jobs.append(job_id)
    # three workers took a job each; the third dies with the primary (its lease is never renewed)
    for _ in range(3):
        store.broker.rpop(QUEUE)
    for n, job_id in enumerate(jobs[:3]):
        assert store.mark_running(job_id, f"w{n}:1:aa", lease_s=2).applied
        assert store.progress(job_id, "denoise", 1, 4, owner=f"w{n}:1:aa").written
    deadline = time.monotonic() + 10
    while not replicated(group):
        assert time.monotonic() < deadline
        time.sleep(0.02)

    group.kill_primary()
    failover_s = wait_for_failover(group)

    # the live workers carry on through the same clients: progress, then success
    for n, job_id in enumerate(jobs[:2]):
        assert retried(lambda j=job_id, n=n: store.progress(j, "denoise", 4, 4, owner=f"w{n}:1:aa")).written
        assert retried(lambda j=job_id, n=n: store.succeed(j, RESULT, owner=f"w{n}:1:aa")).applied
    assert store.redis.connection_pool.get_master_address()[1] == group.replica_port
    # the dead worker's job goes back to its queue once its lease runs out
    time.sleep(2.1)
    assert [(r.job_id, r.outcome) for r in store.reap(3)] == [(jobs[2], "requeued")]
    # the queued jobs (and the requeued one) are delivered and run on the new primary
    ran = []
    while (message := store.broker.rpop(QUEUE)) is not None:
        job_id = message.decode().split('"root_id": "', 1)[1].split('"', 1)[0]
        assert store.mark_running(job_id, "w9:9:zz", lease_s=5).applied
        assert store.succeed(job_id, RESULT, owner="w9:9:zz").applied
        ran.append(job_id)
    assert sorted(ran) == sorted(jobs[2:])

    async def api_view() -> dict[str, int]:
        api = AsyncJobStore.from_url(group.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            page = await api.list_jobs("t1", limit=20, status=JobStatus.succeeded)
            assert sorted(r.id for r in page.records) == sorted(jobs)
            return await api.status_counts()
        finally:
            await api.aclose()

    counts = anyio.run(api_view)
    assert counts["succeeded"] == 10 and counts["queued"] == counts["running"] == 0
    assert store.get("t1", jobs[2]).attempts == 2  # the run lost with its worker still counts
    print(f"\n[sentinel] failover in {failover_s:.1f} s")
