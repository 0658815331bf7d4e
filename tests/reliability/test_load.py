"""Item 10: submissions at a sustained rate through the real API to stand-in workers: every job
reaches a terminal state, none is lost, and the submit latency (p50/p99) is reported."""

import asyncio
import statistics
import time

import httpx
import pytest

from api_schemas import JobStatus
from jobstate.redis_keys import job_record_key
from tests.reliability.conftest import TENANT_A, auth, full_or, record_figures, standin_job, wait_terminal

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _submit_all(url: str, count: int, rate: float) -> tuple[list[str], list[float], dict[int, int]]:
    """POST `count` jobs at `rate` per second (open loop: each at its scheduled time, whatever the answers)."""
    doc = standin_job(steps=1)
    ids: list[str] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=auth(), timeout=60, limits=limits) as client:

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent = time.perf_counter()
            response = await client.post("/v1/jobs", json=doc)
            latencies.append(time.perf_counter() - sent)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 202:
                ids.append(response.json()["id"])

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
    return ids, latencies, statuses


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _record_bytes(stack, job_ids: list[str]) -> dict[str, int]:
    """Redis memory of finished job records (`MEMORY USAGE`, the whole hash with its fields)."""
    store = stack.store()
    sizes = [int(store.redis.memory_usage(job_record_key(job_id), samples=0) or 0) for job_id in job_ids]
    return {"records": len(sizes), "median": int(statistics.median(sizes)), "max": max(sizes)}


def test_sustained_submissions_all_reach_a_terminal_state(stack_factory):
    count, rate = full_or((5000, 40.0), (300, 40.0))
    stack = stack_factory()
    stack.start_api()
    for _ in range(2):
        stack.start_worker()
    started = time.monotonic()
    ids, latencies, statuses = asyncio.run(_submit_all(stack.url, count, rate))
    submitted_s = time.monotonic() - started
    final = wait_terminal(stack.store(), TENANT_A, ids, 120 + count / 10, stack.worker_logs())
    drained_s = time.monotonic() - started
    states: dict[str, int] = {}
    for rec in final.values():
        states[rec.status.value] = states.get(rec.status.value, 0) + 1
    figures = {
        "submissions": count,
        "offered_rate_per_s": rate,
        "achieved_submit_rate_per_s": round(count / submitted_s, 1),
        "accepted_202": statuses.get(202, 0),
        "responses": {str(k): v for k, v in statuses.items()},
        "terminal": len(final),
        "states": states,
        "lost": count - len(final),
        "submit_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(_percentile(latencies, 0.95) * 1000, 1),
            "p99": round(_percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
        },
        "all_terminal_after_s": round(drained_s, 1),
        "throughput_jobs_per_s": round(count / drained_s, 1),
        "workers": 2,
        "record_bytes": _record_bytes(stack, ids[:200]),
    }
    record_figures("load", figures)
    assert statuses.get(202, 0) == count, statuses
    assert len(final) == count and states == {JobStatus.succeeded.value: count}
    # A finished record holds the accepted document (an inline image became `asset:<id>`), the result's
    # keys and hashes and its times: a few KiB whatever the images' size (measured: 4,208 bytes).
    assert figures["record_bytes"]["max"] <= 8192, figures["record_bytes"]
