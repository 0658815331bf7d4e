"""Item 5: a worker told to stop (SIGTERM, Celery's warm shutdown) in the middle of a job hands the
job back: it stops within a step, the job returns to `queued`, the message goes back to the queue, and
the next worker completes it. The shutdown does not wait for the job to end."""

import signal
import time

import pytest
import redis

from api_schemas import JobStatus
from tests.reliability.conftest import TENANT_A, full_or, record_figures, standin_job, wait_terminal
from tests.reliability.standin import COMPLETED

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS, STEP_S = 24, 0.25  # a 6 s job


def test_warm_shutdown_returns_the_running_job_to_the_queue(stack_factory):
    stack = stack_factory()
    stack.start_api()
    store = stack.store()
    r = redis.Redis.from_url(stack.redis.url)
    trials = full_or(5, 1)
    figures: list[dict] = []
    with stack.client() as client:
        for _ in range(trials):
            worker = stack.start_worker()
            response = client.post("/v1/jobs", json=standin_job(steps=STEPS, step_s=STEP_S))
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            # 1. the job is running, a few steps in
            deadline = time.monotonic() + 30
            while (rec := store.get(TENANT_A, job_id)).progress is None or rec.progress.step < 2:
                assert time.monotonic() < deadline, stack.worker_logs()
                time.sleep(0.05)
            # 2. SIGTERM: the worker exits promptly and the job is queued again
            sent = time.monotonic()
            worker.process.proc.send_signal(signal.SIGTERM)
            worker.process.proc.wait(30)
            exit_s = time.monotonic() - sent
            after = store.get(TENANT_A, job_id)
            assert after.status is JobStatus.queued, (after.status, stack.worker_logs())
            assert r.llen("gpu.tiny") == 1  # the message is back in the queue
            # 3. the next worker runs it to the end
            stack.start_worker()
            final = wait_terminal(store, TENANT_A, [job_id], 60)[job_id]
            assert final.status is JobStatus.succeeded, final.error
            completed = int(r.get(COMPLETED + job_id) or 0)
            assert completed == 1
            figures.append(
                {
                    "exit_after_sigterm_s": round(exit_s, 2),
                    "job_length_s": STEPS * STEP_S,
                    "state_after_shutdown": after.status.value,
                    "final_state": final.status.value,
                    "engine_completions": completed,
                    "attempts_recorded": final.attempts,
                }
            )
            stack.workers[-1].stop()
    record_figures(
        "graceful_shutdown",
        {
            "trials": trials,
            "requeued_and_completed": sum(f["final_state"] == "succeeded" for f in figures),
            "lost": sum(f["final_state"] != "succeeded" for f in figures),
            "max_exit_after_sigterm_s": max(f["exit_after_sigterm_s"] for f in figures),
            "per_trial": figures,
        },
    )
