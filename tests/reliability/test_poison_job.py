"""Item 11: a poison job (it kills its worker process every time it runs) is delivered a bounded
number of times (`VSTEER_MAX_DELIVERIES`, 3), then failed with a reason on its next delivery and
acknowledged, while other jobs keep flowing through the workers that are restarted after each crash
(as a supervisor or Kubernetes would)."""

import time

import pytest

from api_schemas import JobStatus
from tests.reliability.conftest import TENANT_A, record_figures, standin_job, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_DELIVERIES = 3


def test_a_poison_job_is_failed_after_bounded_deliveries_and_others_flow(stack_factory):
    stack = stack_factory()
    stack.worker_env["VSTEER_MAX_DELIVERIES"] = str(MAX_DELIVERIES)
    stack.start_api()
    store = stack.store()
    workers = [stack.start_worker(), stack.start_worker()]
    crashes = 0
    normal: list[str] = []
    submitted_at: dict[str, float] = {}
    with stack.client() as client:
        response = client.post("/v1/jobs", json=standin_job(metadata={"standin_crash": "kill"}))
        assert response.status_code == 202, response.text
        poison = response.json()["id"]
        started = time.monotonic()
        deadline = started + MAX_DELIVERIES * 30 + 90
        # keep submitting ordinary jobs while the poison job cycles; restart crashed workers
        while not (rec := store.get(TENANT_A, poison)).status.is_terminal():
            assert time.monotonic() < deadline, (rec, stack.worker_logs())
            for i, worker in enumerate(workers):
                if not worker.process.alive():
                    crashes += 1
                    workers[i] = stack.start_worker(wait=False)
            if len(normal) < 60 and (not normal or time.monotonic() - submitted_at[normal[-1]] > 1.0):
                response = client.post("/v1/jobs", json=standin_job(steps=2, step_s=0.05))
                assert response.status_code == 202, response.text
                normal.append(response.json()["id"])
                submitted_at[normal[-1]] = time.monotonic()
            time.sleep(0.1)
        failed_after_s = time.monotonic() - started
    final = wait_terminal(store, TENANT_A, normal, 120, stack.worker_logs())
    poisoned = store.get(TENANT_A, poison)
    figures = {
        "max_deliveries": MAX_DELIVERIES,
        "worker_crashes": crashes,
        "runs_started": poisoned.attempts,
        "final_state": poisoned.status.value,
        "reason": poisoned.error.detail if poisoned.error else None,
        "failed_after_s": round(failed_after_s, 1),
        "other_jobs": len(normal),
        "other_jobs_succeeded": sum(r.status is JobStatus.succeeded for r in final.values()),
    }
    record_figures("poison_job", figures)
    assert poisoned.status is JobStatus.failed
    assert poisoned.error is not None and poisoned.error.type.endswith("/worker-lost")
    assert poisoned.attempts == MAX_DELIVERIES
    assert crashes == MAX_DELIVERIES
    assert figures["other_jobs_succeeded"] == len(normal)
