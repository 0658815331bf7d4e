"""A simulated GPU worker: the real Celery worker, job state, storage and upload, with the pipeline
replaced by a stand-in that takes a fixed service time.

    VSTEER_SIM_SERVICE_S=0.5 celery -A bench.sim_worker worker --pool solo -Q gpu.sim1

The stand-in reports progress as the engine does (one job-state write per step, `VSTEER_SIM_STEPS`)
and writes a small video, poster and manifest, so Redis and storage see a job's real traffic. It is
installed through `WorkerDeps.run_job`, the worker's declared seam for a stand-in engine.
"""

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from workers import celery_app
from workers.celery_app import app, build_deps, worker_deps
from workers.settings import get_settings

SERVICE_S = float(os.environ.get("VSTEER_SIM_SERVICE_S", "0.5"))
STEPS = int(os.environ.get("VSTEER_SIM_STEPS", "25"))


@dataclasses.dataclass
class SimOutputs:
    files: dict[str, Path]
    manifest: dict[str, Any]
    metrics: dict[str, Any]


@dataclasses.dataclass
class SimProgress:
    stage: str
    step: int
    total: int


class SimRegistry:
    """Nothing to load: every consumed model is 'warm' at once."""

    def __init__(self, models: list[str]) -> None:
        self.models = models

    def warm(self, names: list[str]) -> None:
        self.models = list(names)

    def warm_names(self) -> list[str]:
        return self.models


def stand_in(
    request: Any, out_dir: Path, *, on_progress: Any = None, job_id: str | None = None, **_: Any
) -> SimOutputs:
    """Sleep `SERVICE_S` in `STEPS` steps, reporting each, then write three small outputs."""
    started = time.perf_counter()
    for step in range(1, STEPS + 1):
        time.sleep(max(0.0, started + SERVICE_S * step / STEPS - time.perf_counter()))
        if on_progress is not None:
            on_progress(SimProgress("denoise", step, STEPS))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"video": out_dir / "video.mp4", "poster": out_dir / "poster.png", "manifest": out_dir / "manifest.json"}
    files["video"].write_bytes(os.urandom(64 * 1024))
    files["poster"].write_bytes(os.urandom(8 * 1024))
    manifest = {"job_id": job_id, "simulated": True, "service_s": SERVICE_S}
    files["manifest"].write_text(json.dumps(manifest))
    return SimOutputs(files, manifest, {"timings": {"total": time.perf_counter() - started}})


# Build this process's dependencies now, with the stand-in, before `worker_init` warms the registry.
celery_app._deps = dataclasses.replace(
    build_deps(get_settings()), run_job=stand_in, registry=SimRegistry(get_settings().worker_models)
)
import workers.tasks  # noqa: E402, F401  (registers the task on the app)

__all__ = ["app", "worker_deps"]
