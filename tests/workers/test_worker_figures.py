"""What a worker reports for the API's /metrics after each job, into a real redis-server."""

from types import SimpleNamespace

import anyio

from jobstate.store import AsyncJobStore, JobStore
from workers.job_runner import report_worker_figures


def test_a_job_adds_its_seconds_per_step_to_the_models_histogram(redis_url: str) -> None:
    store = JobStore.from_url(redis_url)
    deps = SimpleNamespace(store=store, worker_id="gpu0@host")
    report_worker_figures(deps, "tiny", {"timings": {"denoise": 2.0}, "denoise_steps": 8})  # type: ignore[arg-type]
    report_worker_figures(deps, "tiny", {"timings": {"denoise": 3.0}, "denoise_steps": 2})  # type: ignore[arg-type]
    report_worker_figures(deps, "tiny", {"timings": {}})  # type: ignore[arg-type]  # no steps ran: nothing

    async def read() -> dict[str, float]:
        return await AsyncJobStore.from_url(redis_url).step_stats("tiny")

    stats = anyio.run(read)
    assert (stats["count"], stats["sum"]) == (2, 1.75)  # 0.25 s and 1.5 s per step
    assert (stats["le:0.25"], stats["le:1"], stats["le:2.5"]) == (1, 1, 2)
    # No GPU in this process: no memory report.
    assert store.redis.exists("{vsteer}:model:tiny:gpu_memory") == 0
