"""Metrics that add up: two API processes sharing a multiprocess folder answer for each other's requests
in one scrape; each model's queued and running jobs, its step times and its workers' GPU memory."""

import json
import re
from pathlib import Path

import httpx
import pytest

from jobstate.records import new_job_id
from jobstate.store import JobStore
from jobstate.task_message import task_message
from tests.servers import start_uvicorn

KEY = "metrics-key"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (its labels in any order)."""
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(match.group(2))
    raise AssertionError(f"no {name} {labels} in:\n{text}")


@pytest.mark.integration
def test_two_api_processes_add_up_in_one_scrape(tmp_path: Path, redis_url: str) -> None:
    shared = tmp_path / "metrics"
    env = {
        "VSTEER_ENVIRONMENT": "test",
        "VSTEER_REDIS_URL": redis_url,
        "VSTEER_STORAGE_BACKEND": "local",
        "VSTEER_STORAGE_LOCAL_DIR": str(tmp_path / "objects"),
        "VSTEER_MODELS": json.dumps(["tiny"]),
        "VSTEER_DEFAULT_MODEL": "tiny",
        "VSTEER_DEV_API_KEYS": json.dumps({KEY: "tenant-m"}),
        "VSTEER_REAP_EVERY_S": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    first = start_uvicorn(tmp_path / "api1.log", env=env)
    second = start_uvicorn(tmp_path / "api2.log", env=env)
    try:
        for server, count in ((first, 3), (second, 5)):
            for _ in range(count):
                assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        scraped = httpx.get(f"{first.url}/metrics", timeout=10).text
        again = httpx.get(f"{second.url}/metrics", timeout=10).text
    finally:
        first.stop()
        second.stop()
    labels = {"method": "GET", "route": "/readyz", "status": "200"}
    assert sample(scraped, "vsteer_http_request_duration_seconds_count", **labels) == 8
    assert sample(again, "vsteer_http_request_duration_seconds_count", **labels) == 8
    assert len(list(shared.glob("*.db"))) >= 2  # one file per process


@pytest.mark.anyio
async def test_per_model_jobs_step_times_and_gpu_memory(client: httpx.AsyncClient, store: JobStore) -> None:
    def queued_job() -> str:
        job_id = new_job_id("tenant-a")
        task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "tenant-a"}, "gpu.svd-xt", task_id=job_id)
        store.create(job_id, "tenant-a", "svd-xt", {"model": "svd-xt"}, task=task)
        return job_id

    running = [queued_job() for _ in range(2)]
    queued_job()
    for job_id in running:
        store.redis.rpop("gpu.svd-xt")  # delivered to a worker
        store.mark_running(job_id)
    for seconds in (0.02, 0.2, 0.3):
        store.observe_step("svd-xt", seconds)
    store.report_gpu_memory("svd-xt", "gpu0@host", 7 * 2**30)

    text = (await client.get("/metrics")).text
    assert sample(text, "vsteer_model_jobs", model="svd-xt", state="queued") == 1
    assert sample(text, "vsteer_model_jobs", model="svd-xt", state="running") == 2
    assert sample(text, "vsteer_worker_step_seconds_bucket", model="svd-xt", le="0.025") == 1
    assert sample(text, "vsteer_worker_step_seconds_bucket", model="svd-xt", le="0.25") == 2
    assert sample(text, "vsteer_worker_step_seconds_count", model="svd-xt") == 3
    assert sample(text, "vsteer_worker_step_seconds_sum", model="svd-xt") == pytest.approx(0.52)
    assert sample(text, "vsteer_worker_gpu_peak_memory_bytes", model="svd-xt", worker="gpu0@host") == 7 * 2**30


@pytest.mark.anyio
async def test_the_dashboard_reads_only_metrics_the_api_exports(client: httpx.AsyncClient, store: JobStore) -> None:
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/vsteer-dashboard.json").read_text())
    store.observe_step("svd-xt", 0.1)
    store.report_gpu_memory("svd-xt", "gpu0@host", 1)
    await client.get("/readyz")
    exported = {
        re.sub(r"_(bucket|count|sum)$", "", line.split("{")[0].split(" ")[0])
        for line in (await client.get("/metrics")).text.splitlines()
        if line and not line.startswith("#")
    }
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for e in exprs for name in re.findall(r"\bvsteer_\w+", e)}
    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
