"""Prometheus metrics: request latency (measured here), and jobs by status, queue depth and job durations
(read from Redis at scrape time, so every API replica reports the same shared figures)."""

import time

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobstate.operations import TERMINAL
from jobstate.redis_keys import DURATION_BUCKETS, bucket_name
from jobstate.store import AsyncJobStore


class Metrics:
    """The app's own registry (one per app, so tests can build many apps)."""

    def __init__(self) -> None:
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


async def _job_families(store: AsyncJobStore, queues: list[str]) -> list[GaugeMetricFamily | HistogramMetricFamily]:
    jobs = GaugeMetricFamily("vsteer_jobs", "Jobs by status.", labels=["status"])
    for status, count in (await store.status_counts()).items():
        jobs.add_metric([status], count)
    depth = GaugeMetricFamily("vsteer_queue_depth", "Messages waiting in each worker queue.", labels=["queue"])
    for queue in queues:
        depth.add_metric([queue], await store.queue_depth(queue))
    durations = HistogramMetricFamily(
        "vsteer_job_duration_seconds", "Run time of finished jobs (start to end) by outcome.", labels=["status"]
    )
    for status in TERMINAL:
        stats = await store.duration_stats(status)
        buckets = [(bucket_name(le), stats.get(f"le:{bucket_name(le)}", 0.0)) for le in DURATION_BUCKETS]
        buckets.append(("+Inf", stats.get("count", 0.0)))
        durations.add_metric([status], buckets, sum_value=stats.get("sum", 0.0))
    return [jobs, depth, durations]


async def render(metrics: Metrics, store: AsyncJobStore, queues: list[str]) -> bytes:
    """The exposition text: this process's request metrics, then the shared job figures."""
    up = GaugeMetricFamily("vsteer_redis_up", "Whether job state in Redis could be read for this scrape.")
    try:
        families = await _job_families(store, queues)
        up.add_metric([], 1)
    except Exception:
        families = []
        up.add_metric([], 0)
    shared = CollectorRegistry(auto_describe=False)
    shared.register(_Snapshot([up, *families]))
    return generate_latest(metrics.registry) + generate_latest(shared)
