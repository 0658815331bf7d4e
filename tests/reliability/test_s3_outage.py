"""Item 3: S3 goes away while a job uploads its results. Within the worker's retry budget
(`VSTEER_STORAGE_RETRY_BUDGET_S`, backoff 0.5 s doubling to 8 s) the job completes once S3 is back;
past it the job fails saying storage was unreachable. Never stuck in `running`.

The outage is a TCP proxy in front of moto that refuses connections and cuts the open ones, so the
bucket's contents survive, as they would a real S3 endpoint's outage."""

import time

import pytest

from api_schemas import JobStatus
from storage.s3 import S3Storage
from tests.reliability.conftest import TENANT_A, full_or, record_figures, standin_job, wait_terminal
from tests.reliability.outage import TcpProxy
from tests.servers import start_moto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "vsteer-reliability"


def _s3_env(endpoint: str, budget_s: float) -> dict[str, str]:
    return {
        "VSTEER_STORAGE_BACKEND": "s3",
        "VSTEER_STORAGE_S3_BUCKET": BUCKET,
        "VSTEER_STORAGE_S3_ENDPOINT_URL": endpoint,
        "VSTEER_STORAGE_S3_ACCESS_KEY_ID": "testing",
        "VSTEER_STORAGE_S3_SECRET_ACCESS_KEY": "testing",
        "VSTEER_STORAGE_S3_MAX_ATTEMPTS": "3",
        "VSTEER_STORAGE_RETRY_BUDGET_S": str(budget_s),
    }


def _run_through_outage(stack, client, proxy: TcpProxy, outage_s: float | None) -> tuple[object, float, float]:
    """Submit a job, take S3 down while it denoises, bring it back after `outage_s` (None: only once the
    job is terminal). Returns the final record, the outage length and the time from S3's return to the end."""
    store = stack.store()
    job_id = client.post("/v1/jobs", json=standin_job(steps=8, step_s=0.25)).json()["id"]
    while (rec := store.get(TENANT_A, job_id)).progress is None or rec.progress.step < 3:
        assert not rec.status.is_terminal(), rec.error
        time.sleep(0.02)
    proxy.down()
    down_at = time.monotonic()
    deadline = down_at + (outage_s if outage_s is not None else 600)
    while time.monotonic() < deadline:
        if outage_s is None and store.get(TENANT_A, job_id).status.is_terminal():
            break
        time.sleep(0.1)
    proxy.up()
    back_at = time.monotonic()
    final = wait_terminal(store, TENANT_A, [job_id], 120, stack.worker_logs())[job_id]
    return final, back_at - down_at, time.monotonic() - back_at


def test_an_s3_outage_during_upload_is_retried_or_fails_clearly(stack_factory, tmp_path):
    outage_s = full_or(30.0, 6.0)
    moto = start_moto(tmp_path)
    proxy = TcpProxy(("127.0.0.1", moto.port))
    try:
        proxy.up()
        S3Storage(BUCKET, endpoint_url=moto.url, access_key_id="testing", secret_access_key="testing").ensure_bucket()
        stack = stack_factory()
        stack.api_env.update(_s3_env(moto.url, 120))
        stack.start_api()

        # 1. an outage shorter than the retry budget: the job completes after S3 returns
        worker = stack.start_worker(**_s3_env(proxy.url, 120))
        with stack.client() as client:
            done, down_s, after_s = _run_through_outage(stack, client, proxy, outage_s)
            assert done.status is JobStatus.succeeded, done.error
            s3 = S3Storage(BUCKET, endpoint_url=moto.url, access_key_id="testing", secret_access_key="testing")
            assert s3.info(done.result.video.key).sha256 == done.result.video.sha256
            retries = worker.process.log.read_text(errors="replace").count("retrying in")
            worker.stop()

            # 2. an outage longer than the budget: the job fails with the reason, and is not left running
            budget_s = 4.0
            stack.start_worker(**_s3_env(proxy.url, budget_s))
            failed, failed_down_s, _ = _run_through_outage(stack, client, proxy, None)
            assert failed.status is JobStatus.failed
            assert failed.error.type.endswith("/storage-unavailable"), failed.error
            assert "unreachable" in failed.error.detail
    finally:
        proxy.down()
        moto.stop()
    record_figures(
        "s3_outage",
        {
            "outage_s": round(down_s, 1),
            "retry_budget_s": 120,
            "outcome_within_budget": done.status.value,
            "upload_retries_logged": retries,
            "completed_after_s3_back_s": round(after_s, 1),
            "short_budget_s": budget_s,
            "outcome_past_budget": failed.status.value,
            "failed_after_s": round(failed_down_s, 1),
            "reason_past_budget": failed.error.detail,
            "stuck_running": 0,
        },
    )
