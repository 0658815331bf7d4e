"""A fast stand-in for the engine with `workers.engine.run_job`'s signature, steered by job metadata.

- `standin_steps` (default 2) denoising steps, each `standin_step_s` seconds (default 0), each reported
  through `on_progress` and followed by `should_cancel()`, as the real step callback does;
- `standin_crash: "kill"` makes the worker process SIGKILL itself at the first step (a poison job);
  `standin_crash: "raise"` raises an ordinary exception there (the job fails, the worker lives);
- the job's `image` is read and decoded through the worker's resolver, as the engine does.

Each finished run adds 1 to `vsteer-test:completed:<job_id>` in Redis, so a test can count how many
times a job's engine ran to the end (a job completed twice would show 2).
"""

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import redis

from jobstate.connections import sync_client
from workers.engine import JobOutputs, Progress
from workers.errors import JobCanceled

COMPLETED = "vsteer-test:completed:"


def run_job(job: Any, out_dir: Path, *, images: Any, on_progress: Any, should_cancel: Any, job_id: str, **_: Any):
    meta = job.metadata
    steps = int(meta.get("standin_steps", 2))
    step_s = float(meta.get("standin_step_s", 0.0))
    if job.image is not None:
        images.decode(images.read(job.image, "image"), "image")
    on_progress(Progress("denoise", 0, steps))
    for step in range(steps):
        if meta.get("standin_crash") == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if meta.get("standin_crash") == "raise":
            raise RuntimeError("stand-in engine failure")
        time.sleep(step_s)
        on_progress(Progress("denoise", step + 1, steps))
        if should_cancel():
            raise JobCanceled()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "video": out_dir / "video.mp4",
        "poster": out_dir / "poster.png",
        "manifest": out_dir / "manifest.json",
    }
    files["video"].write_bytes(b"\x00\x00\x00\x18ftypmp42" + job_id.encode())
    files["poster"].write_bytes(b"\x89PNG\r\n\x1a\n" + job_id.encode())
    files["manifest"].write_text(json.dumps({"job_id": job_id, "standin": True}))
    count_completion(job_id)
    return JobOutputs(files=files, manifest={"job_id": job_id}, metrics={"standin": True})


def count_completion(job_id: str) -> None:
    """The test's own counter; retried so a Redis restart does not fail the job through it."""
    client = sync_client(os.environ["VSTEER_REDIS_URL"])
    for _ in range(600):
        try:
            client.incr(COMPLETED + job_id)
            return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError):
            time.sleep(0.1)
