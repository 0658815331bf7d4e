"""Prometheus metrics: request latency (measured here), and jobs by status, queue depth and job durations,
each model's queued and running jobs, its workers' seconds per denoising step and their GPU memory
(read from Redis at scrape time, so every API replica reports the same shared figures).

Several API processes on one host (uvicorn's `--workers`, `WEB_CONCURRENCY`) add up their request
metrics in one scrape when `PROMETHEUS_MULTIPROC_DIR` names a folder they share (set before the
process starts, as the API image does): any process's `/metrics` then answers for all of them.
"""

import os
import time

from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobstate.operations import TERMINAL
from jobstate.queues import queue_for
from jobstate.redis_keys import DURATION_BUCKETS, STEP_BUCKETS, bucket_name
from jobstate.store import AsyncJobStore

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
GPU_REPORT_MAX_AGE_S = 3600.0  # a worker's GPU memory is shown while its last report is this recent


class Metrics:
    """The app's own registry (one per app, so tests can build many apps)."""

    def __init__(self) -> None:
        self.shared_dir = os.environ.get(MULTIPROCESS_ENV) or None
        if self.shared_dir:
            os.makedirs(self.shared_dir, exist_ok=True)
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "vsteer_http_request_duration_seconds",
            "HTTP request latency by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )


class _Snapshot(Collector):
    def __init__(self, families: list[GaugeMetricFamily | HistogramMetricFamily]) -> None:
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.families


def _histogram(stats: dict[str, float], bounds: tuple[float, ...]) -> tuple[list[tuple[str, float]], float]:
    """A Redis histogram hash (`sum`, `count`, `le:<bound>`) as Prometheus buckets and sum."""
    buckets = [(bucket_name(le), stats.get(f"le:{bucket_name(le)}", 0.0)) for le in bounds]
    buckets.append(("+Inf", stats.get("count", 0.0)))
    return buckets, stats.get("sum", 0.0)


async def _job_families(store: AsyncJobStore, models: list[str]) -> list[GaugeMetricFamily | HistogramMetricFamily]:
    jobs = GaugeMetricFamily("vsteer_jobs", "Jobs by status.", labels=["status"])
    for status, count in (await store.status_counts()).items():
        jobs.add_metric([status], count)
    depth = GaugeMetricFamily("vsteer_queue_depth", "Messages waiting in each worker queue.", labels=["queue"])
    per_model = GaugeMetricFamily(
        "vsteer_model_jobs",
        "Each model's jobs waiting in its queue and running on its workers.",
        labels=["model", "state"],
    )
    steps = HistogramMetricFamily(
        "vsteer_worker_step_seconds", "Seconds per denoising step on each model's workers.", labels=["model"]
    )
    gpu = GaugeMetricFamily(
        "vsteer_worker_gpu_peak_memory_bytes",
        "Peak GPU memory of each worker's last job (CUDA workers; reports of the last hour).",
        labels=["model", "worker"],
    )
    for model in models:
        queued = await store.queue_depth(queue_for(model))
        depth.add_metric([queue_for(model)], queued)
        per_model.add_metric([model, "queued"], queued)
        per_model.add_metric([model, "running"], await store.running_count(model))
        buckets, total = _histogram(await store.step_stats(model), STEP_BUCKETS)
        steps.add_metric([model], buckets, sum_value=total)
        for worker, peak in sorted((await store.gpu_memory(model, time.time() - GPU_REPORT_MAX_AGE_S)).items()):
            gpu.add_metric([model, worker], peak)
    durations = HistogramMetricFamily(
        "vsteer_job_duration_seconds", "Run time of finished jobs (start to end) by outcome.", labels=["status"]
    )
    for status in TERMINAL:
        buckets, total = _histogram(await store.duration_stats(status), DURATION_BUCKETS)
        durations.add_metric([status], buckets, sum_value=total)
    return [jobs, depth, per_model, steps, gpu, durations]


async def render(metrics: Metrics, store: AsyncJobStore, models: list[str]) -> bytes:
    """The exposition text: the request metrics (this process's, or every process's that shares the
    multiprocess folder), then the shared job figures of `models`."""
    up = GaugeMetricFamily("vsteer_redis_up", "Whether job state in Redis could be read for this scrape.")
    try:
        families = await _job_families(store, models)
        up.add_metric([], 1)
    except Exception:
        families = []
        up.add_metric([], 0)
    shared = CollectorRegistry(auto_describe=False)
    shared.register(_Snapshot([up, *families]))
    if metrics.shared_dir:
        processes = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(processes, path=metrics.shared_dir)
        return generate_latest(processes) + generate_latest(shared)
    return generate_latest(metrics.registry) + generate_latest(shared)
