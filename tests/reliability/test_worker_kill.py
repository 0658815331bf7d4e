"""Item 1: a worker SIGKILLed in the middle of denoising loses nothing. Its message stays
unacknowledged in Redis (`task_acks_late`), comes back after the visibility timeout, and another
worker process completes the job: final state `succeeded`, the engine ran to the end exactly once,
and the job's objects are exactly one set under its deterministic keys.

Trials are pipelined: after each kill a fresh worker starts and takes the next job while the killed
job waits out its visibility timeout. `tests/integration/test_redelivery.py` does one trial with the
real tiny SVD."""

import hashlib
import time

import pytest
import redis

from api_schemas import JobStatus
from tests.reliability.conftest import TENANT_A, VISIBILITY_S, full_or, record_figures, standin_job, wait_terminal
from tests.reliability.standin import COMPLETED

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPECTED_OBJECTS = {"video.mp4", "poster.png", "manifest.json"}


def test_jobs_survive_their_worker_being_killed_mid_denoise(stack_factory):
    trials = full_or(20, 2)
    stack = stack_factory()
    stack.start_api()
    store = stack.store()
    r = redis.Redis.from_url(stack.redis.url)
    with stack.client() as client:
        job_ids = []
        for _ in range(trials):
            response = client.post("/v1/jobs", json=standin_job(steps=10, step_s=0.15))
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["id"])

    # 1. kill the worker whenever it is in the middle of denoising a job for the first time
    killed: dict[str, float] = {}
    worker = stack.start_worker()
    deadline = time.monotonic() + trials * 30 + 120
    while len(killed) < trials:
        assert time.monotonic() < deadline, stack.worker_logs()
        if not worker.process.alive():
            worker = stack.start_worker()
        for job_id in job_ids:
            rec = store.get(TENANT_A, job_id)
            in_denoise = rec.progress is not None and rec.progress.stage == "denoise" and rec.progress.step >= 2
            if job_id not in killed and rec.status is JobStatus.running and rec.attempts == 1 and in_denoise:
                worker.process.proc.kill()
                worker.process.proc.wait(10)
                killed[job_id] = time.monotonic()
                assert store.get(TENANT_A, job_id).status is JobStatus.running
                worker = stack.start_worker()
                break
        time.sleep(0.05)

    # 2. every job comes back after the visibility timeout and is completed by a later worker
    final = wait_terminal(store, TENANT_A, job_ids, VISIBILITY_S * trials + 120, stack.worker_logs())
    finished_at = time.monotonic()

    # 3. nothing lost, nothing done twice
    lost = [j for j, rec in final.items() if rec.status is not JobStatus.succeeded]
    completions = {j: int(r.get(COMPLETED + j) or 0) for j in job_ids}
    duplicated = 0
    for job_id, rec in final.items():
        folder = stack.storage_dir / "jobs" / TENANT_A / job_id
        names = {p.name for p in folder.iterdir()}
        duplicated += len(names - EXPECTED_OBJECTS)
        video = folder / "video.mp4"
        assert hashlib.sha256(video.read_bytes()).hexdigest() == rec.result.video.sha256
    redelivery_s = [final[j].finished_at.timestamp() for j in job_ids]
    figures = {
        "trials": trials,
        "killed_mid_denoise": len(killed),
        "succeeded": sum(rec.status is JobStatus.succeeded for rec in final.values()),
        "lost": len(lost),
        "duplicated_result_objects": duplicated,
        "engine_completions_per_job": sorted(set(completions.values())),
        "attempts_per_job": sorted({rec.attempts for rec in final.values()}),
        "visibility_timeout_s": VISIBILITY_S,
        "kill_to_last_completion_s": round(finished_at - min(killed.values()), 1),
        "finished_span_s": round(max(redelivery_s) - min(redelivery_s), 1),
    }
    record_figures("worker_sigkill", figures)
    assert not lost, {j: final[j].error for j in lost}
    assert duplicated == 0
    assert set(completions.values()) == {1}, completions
    assert all(rec.attempts == 2 for rec in final.values())
