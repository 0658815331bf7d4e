"""(c″) Long videos: a job of 1, 2 and 4 segments, time against linear and peak host memory.

Each case runs in a fresh process (its peak resident memory is its own): the process loads the tiny
model, runs one 1-segment job to warm up, then the timed job of `count` segments (overlap 2, linear
blend, no storyboard). Rounds interleave the counts, alternating their order. Figures: seconds of N
segments ÷ (N × seconds of one), target ≤ 1.05 (and the same of the process's CPU seconds, which other
work on a shared machine disturbs less); the process's peak RSS with 4 segments ÷ with 1,
target ≤ 1.2; and how far the peak rose above the warm-up's (what the chain itself added).

    python -m bench.segments
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, median, table, test_image, tiny_model_dir, write_result

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 2},
    "small": {"width": 128, "height": 64, "num_frames": 8, "steps": 6},
    "medium": {"width": 256, "height": 128, "num_frames": 14, "steps": 10},
}
OVERLAP = 2


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(size: str, count: int, threads: int) -> dict[str, Any]:
    """One case in this process: warm up, then time the job of `count` segments."""
    import torch

    from api_schemas import JobRequest
    from workers.engine import run_job
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, ModelSpec, quiet_libraries

    quiet_libraries()
    torch.set_num_threads(threads)
    registry = ModelRegistry({"m": ModelSpec(name="m", source=str(tiny_model_dir()))}, default="m")
    with tempfile.TemporaryDirectory(prefix="vsteer-bench-") as tmp:
        work = Path(tmp)
        test_image(0).save(work / "image.png")
        base = {"seed": 42, "image": str(work / "image.png"), "generation": SIZES[size], "output": {"preview": "none"}}
        images = ImageResolver(allow_paths=True)
        run_job(JobRequest.model_validate(base), work / "warm", registry=registry, images=images)
        warm = peak_rss_mib()
        job = JobRequest.model_validate({**base, "segments": {"count": count, "overlap": OVERLAP}})
        start, cpu = time.perf_counter(), time.process_time()
        outputs = run_job(job, work / "job", registry=registry, images=images)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "denoise": outputs.metrics["timings"]["denoise"],
        "peak_rss_mib": peak_rss_mib(),
        "peak_rise_mib": peak_rss_mib() - warm,
        "frames": outputs.manifest["segments"]["frames"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per case (1: a busy machine's other work disturbs less)"
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/segments.json)")
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.size, args.child, args.threads)))
        return {}

    tiny_model_dir()  # built once, before the cases share it
    counts = [int(c) for c in args.counts.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {c: [] for c in counts}
    for r in range(args.repeats):
        for count in counts if r % 2 == 0 else reversed(counts):
            command = [sys.executable, "-m", "bench.segments", "--size", args.size, "--threads", str(args.threads)]
            command += ["--child", str(count)]
            done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
            runs[count].append(json.loads(done.stdout.strip().splitlines()[-1]))
    one = median([run["seconds"] for run in runs[counts[0]]]) / counts[0]
    one_cpu = median([run["cpu_seconds"] for run in runs[counts[0]]]) / counts[0]
    cases = {}
    for count in counts:
        seconds = median([run["seconds"] for run in runs[count]])
        cpu = median([run["cpu_seconds"] for run in runs[count]])
        cases[count] = {
            "seconds_median": seconds,
            "cpu_seconds_median": cpu,
            "denoise_median": median([run["denoise"] for run in runs[count]]),
            "vs_linear": seconds / (count * one),
            "cpu_vs_linear": cpu / (count * one_cpu),
            "peak_rss_mib": median([run["peak_rss_mib"] for run in runs[count]]),
            "peak_rise_mib": median([run["peak_rise_mib"] for run in runs[count]]),
            "frames": runs[count][0]["frames"],
        }
    first, last = cases[counts[0]], cases[counts[-1]]
    figures = {
        "size": {"name": args.size, **SIZES[args.size]},
        "overlap": OVERLAP,
        "torch_threads": args.threads,
        "cases": cases,
        "runs": {str(c): runs[c] for c in counts},
        "worst_vs_linear": max(case["vs_linear"] for case in cases.values()),
        "worst_cpu_vs_linear": max(case["cpu_vs_linear"] for case in cases.values()),
        "peak_rss_last_vs_first": last["peak_rss_mib"] / first["peak_rss_mib"],
        "target": {"vs_linear": 1.05, "peak_rss_4_vs_1": 1.2},
    }
    rows = [
        [
            count,
            case["frames"],
            case["seconds_median"],
            case["vs_linear"],
            case["cpu_vs_linear"],
            case["peak_rss_mib"],
            case["peak_rise_mib"],
        ]
        for count, case in cases.items()
    ]
    print(
        table(
            f"segments ({args.size}: {SIZES[args.size]}, overlap {OVERLAP}, {args.repeats} rounds, a process each, "
            f"{args.threads} torch threads)",
            ["segments", "frames", "job s", "÷ linear", "CPU s ÷ linear", "peak RSS MiB", "peak rise MiB"],
            rows,
        )
    )
    path = write_result("segments", figures, args.out)
    print(f"\nwritten to {path}")
    return figures


if __name__ == "__main__":
    main()
