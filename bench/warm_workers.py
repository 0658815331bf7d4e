"""(e) Warm workers: the first job after worker start vs steady state, and memory over many jobs.

Each trial is a fresh process that starts as a GPU worker does (`ModelRegistry.warm`, which loads the
model and applies the device's fast path, warm-up included where it is on), then runs `--jobs`
identical jobs through `run_job`, recording each job's seconds and the process's resident memory
after it. Trials alternate the default start with `VSTEER_WARMUP=1` (the warm-up forced on, as it
is on CUDA), so both are measured side by side.

Figures: first job ÷ median of the others (target ≤ 1.2), and resident memory growth from job 10 to
the last job (target: none beyond noise).

    python -m bench.warm_workers
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, median, rss_mib, table, test_image, tiny_model_dir, write_result

SIZE = {"width": 64, "height": 64, "num_frames": 6, "steps": 4}


def child(jobs: int) -> None:
    """One worker's life: start (load + fast path), then `jobs` jobs; prints JSON on the last line."""
    started = time.perf_counter()
    from api_schemas import JobRequest
    from workers.engine import run_job
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, ModelSpec
    from workers.tiny import TINY_DEFAULTS

    registry = ModelRegistry({"m": ModelSpec(name="m", source=str(tiny_model_dir()), **TINY_DEFAULTS)}, default="m")
    registry.warm(["m"])
    start_s = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="vsteer-bench-"))
    test_image(0).save(work / "image.png")
    job = JobRequest.model_validate(
        {"seed": 1, "image": str(work / "image.png"), "generation": SIZE, "output": {"preview": "gif"}}
    )
    images = ImageResolver(allow_paths=True)
    seconds, rss = [], []
    for k in range(jobs):
        t = time.perf_counter()
        run_job(job, work / str(k % 2), registry=registry, images=images)
        seconds.append(time.perf_counter() - t)
        rss.append(rss_mib())
    print(json.dumps({"start_s": start_s, "seconds": seconds, "rss_mib": rss}))


def trial(jobs: int, warm_up: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("VSTEER_WARMUP", None)
    if warm_up:
        env["VSTEER_WARMUP"] = "1"
    out = subprocess.run(
        [sys.executable, "-m", "bench.warm_workers", "--child", "--jobs", str(jobs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        check=True,
        timeout=600,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    seconds, rss = data["seconds"], data["rss_mib"]
    steady = median(seconds[1:])
    tail = rss[min(9, len(rss) - 1) :]
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) > 2 else 0.0
    return {
        "start_s": data["start_s"],
        "first_job_s": seconds[0],
        "steady_job_s": steady,
        "first_vs_steady": seconds[0] / steady,
        "rss_mib_after_first": rss[0],
        "rss_mib_from_job10": tail[0],
        "rss_mib_last": rss[-1],
        "rss_growth_mib_from_job10": rss[-1] - tail[0],
        "rss_slope_mib_per_job": slope,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs per worker life")
    parser.add_argument("--trials", type=int, default=2, help="worker lives per variant (interleaved)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/warm_workers.json)")
    args = parser.parse_args(argv)
    if args.child:
        child(args.jobs)
        return {}

    trials: dict[str, list[dict[str, Any]]] = {"default": [], "warm_up": []}
    for _ in range(args.trials):
        for name in trials:
            trials[name].append(trial(args.jobs, warm_up=name == "warm_up"))
    figures: dict[str, Any] = {"size": SIZE, "jobs": args.jobs, "trials": trials, "targets": {"first_vs_steady": 1.2}}
    rows = []
    for name, runs in trials.items():
        summary = {key: median([r[key] for r in runs]) for key in runs[0]}
        figures[name] = summary
        rows.append(
            [
                name,
                summary["start_s"],
                summary["first_job_s"],
                summary["steady_job_s"],
                summary["first_vs_steady"],
                summary["rss_mib_from_job10"],
                summary["rss_mib_last"],
                summary["rss_slope_mib_per_job"],
            ]
        )
    print(
        table(
            f"warm workers (tiny model {SIZE}, {args.jobs} jobs per worker, {args.trials} workers per variant)",
            ["start", "start s", "first job s", "steady s", "first ÷ steady", "RSS@10 MiB", "RSS@end MiB", "MiB/job"],
            rows,
        )
    )
    print(f"\nwrote {write_result('warm_workers', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
