"""Item 4: with `VSTEER_REDIS_URL=redis+sentinel://…` (job state and the broker), a primary killed
while jobs are queued and running loses none of them.

A primary, a replica and three Sentinels run on loopback; the API and two stand-in GPU workers (real
Celery workers, kombu's `sentinel://` transport) use the Sentinel URL. Ten jobs are submitted; with
some running and the rest queued the primary is SIGKILLed; the Sentinels promote the replica, the
clients follow it, and every job ends `succeeded`, counted once in the job counters. A run cut off by
the failover (its worker's connection was lost) is found by the reaper and run again: delivery is
at least once, so the engine may run a job twice; the figure says how often it did.

The kill comes once the replica has caught up (as in `tests/jobstate/test_sentinel.py`): a write
acknowledged in the instant before a primary dies can be lost (asynchronous replication).
"""

import time
from pathlib import Path

import pytest
import redis

from api_schemas import JobStatus
from jobstate.operations import duration_stats_op, status_counts_op
from jobstate.store import JobStore
from tests.redis_topologies import start_sentinel_group, wait_for_failover
from tests.reliability.conftest import TENANT_A, record_figures, standin_job
from tests.reliability.standin import COMPLETED

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 10


def tolerant(store: JobStore, job_id: str) -> JobStatus | None:
    try:
        record = store.get(TENANT_A, job_id)
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    return None if record is None else record.status


def test_a_primary_failover_with_jobs_queued_and_running_loses_none(stack_factory, tmp_path: Path) -> None:
    group = start_sentinel_group(tmp_path / "sentinel")
    try:
        stack = stack_factory()
        stack.redis.stop()  # this stack's job state and broker are the Sentinel-managed primary
        for env in (stack.api_env, stack.worker_env):
            env["VSTEER_REDIS_URL"] = group.url
        stack.api_env["VSTEER_REAP_EVERY_S"] = "1"
        stack.start_api()
        stack.start_worker()
        stack.start_worker()
        store = JobStore.from_url(group.url, socket_timeout=1, socket_connect_timeout=1)

        with stack.client() as client:
            ids = []
            for _ in range(JOBS):
                response = client.post("/v1/jobs", json=standin_job(steps=8, step_s=0.15))
                assert response.status_code in (200, 201, 202), response.text
                ids.append(response.json()["id"])
        deadline = time.monotonic() + 30
        while [tolerant(store, j) for j in ids].count(JobStatus.running) < 2:
            assert time.monotonic() < deadline, stack.worker_logs()
            time.sleep(0.05)
        primary = redis.Redis(port=group.primary_port)
        replica = redis.Redis(port=group.replica_port)
        while int(replica.info("replication")["master_repl_offset"]) < int(
            primary.info("replication")["master_repl_offset"]
        ):
            time.sleep(0.01)
        states = [tolerant(store, j) for j in ids]

        group.kill_primary()
        killed_at = time.monotonic()
        failover_s = wait_for_failover(group)

        pending = set(ids)
        deadline = time.monotonic() + 90
        while pending:
            pending = {j for j in pending if tolerant(store, j) not in (JobStatus.succeeded, JobStatus.failed)}
            assert time.monotonic() < deadline, (pending, stack.worker_logs())
            time.sleep(0.2)
        recovered_s = time.monotonic() - killed_at

        assert [store.get(TENANT_A, j).status for j in ids] == [JobStatus.succeeded] * JOBS, stack.worker_logs()
        counts = store.run(status_counts_op())
        assert counts["succeeded"] == JOBS and counts["queued"] == counts["running"] == 0
        assert store.run(duration_stats_op("succeeded"))["count"] == JOBS  # each job ended once
        completions = [int(store.redis.get(COMPLETED + j) or 0) for j in ids]
        assert min(completions) >= 1
        assert store.broker.llen("gpu.tiny") == 0
        record_figures(
            "sentinel_failover",
            {
                "jobs": JOBS,
                "at_kill": {s.value: states.count(s) for s in JobStatus if states.count(s)},
                "failover_s": round(failover_s, 2),
                "all_succeeded_after_kill_s": round(recovered_s, 2),
                "engine_runs_twice": sum(c > 1 for c in completions),
            },
        )
    finally:
        group.stop()
