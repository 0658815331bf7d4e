"""(g) Bidirectional keyframe sampling vs a plain job of the same size.

A keyframe job with `interpolation: bidirectional` (two guided UNet calls per step: forward on the
first keyframe, time-flipped on the last) against a plain job on the first keyframe alone, both at
the same size, steps and seed, interleaved. The bidirectional job does twice the UNet calls and a few
extra tensor operations per step (a re-noise draw, two flips, the held end frames), plus one more
image to encode. Target: job time ≤ 2.05 × the plain job's. Beside the wall-clock ratios it gives the
ratio of the process's CPU seconds, which a shared machine's other work disturbs less.

    python -m bench.bidirectional
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import interleave, table, test_image, tiny_model_dir, write_result

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 2},
    "small": {"width": 128, "height": 64, "num_frames": 8, "steps": 8},
    "medium": {"width": 256, "height": 128, "num_frames": 14, "steps": 20},
}
TARGET = 2.05


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/bidirectional.json)")
    args = parser.parse_args(argv)

    from api_schemas import JobRequest
    from workers.engine import run_job
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, ModelSpec, quiet_libraries

    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="vsteer-bench-"))
    registry = ModelRegistry({"m": ModelSpec(name="m", source=str(tiny_model_dir()))}, default="m")
    model = registry.get("m")
    for k in range(2):
        test_image(k).save(work / f"key{k}.png")
    base = {"seed": 42, "generation": SIZES[args.size], "output": {"preview": "none"}}
    plain = JobRequest.model_validate({**base, "image": str(work / "key0.png")})
    keyframes = [{"image": str(work / f"key{k}.png"), "at": float(k)} for k in range(2)]
    both = JobRequest.model_validate({**base, "keyframes": keyframes, "interpolation": "bidirectional"})
    images = ImageResolver(allow_paths=True)

    def run(job: JobRequest, name: str) -> dict[str, float]:
        cpu = time.process_time()
        timings = run_job(job, work / name, registry=registry, images=images).metrics["timings"]
        return {"denoise": timings["denoise"], "engine": timings["total"], "cpu": time.process_time() - cpu}

    try:
        result = interleave(
            {"plain": lambda: run(plain, "plain"), "bidirectional": lambda: run(both, "both")}, args.repeats
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        "size": {"name": args.size, **SIZES[args.size]},
        "device": model.device,
        "runs": result.summary(),
        "job_bidirectional_vs_plain": result.ratio("bidirectional", "plain"),
        "denoise_bidirectional_vs_plain": result.ratio("bidirectional.denoise", "plain.denoise"),
        "cpu_bidirectional_vs_plain": result.ratio("bidirectional.cpu", "plain.cpu"),
        "unet_calls_ratio": 2,
        "target": TARGET,
    }
    rows = [
        ["plain (first keyframe as the image)", result.median("plain"), result.median("plain.denoise"), 1.0, 1.0, 1.0],
        [
            "bidirectional (two keyframes)",
            result.median("bidirectional"),
            result.median("bidirectional.denoise"),
            figures["job_bidirectional_vs_plain"],
            figures["denoise_bidirectional_vs_plain"],
            figures["cpu_bidirectional_vs_plain"],
        ],
    ]
    print(
        table(
            f"bidirectional vs plain ({args.size}: {SIZES[args.size]}, {model.device}, {args.repeats} rounds)",
            ["job", "job s", "denoise s", "job ÷ plain", "denoise ÷ plain", "CPU s ÷ plain"],
            rows,
        )
    )
    path = write_result("bidirectional", figures, args.out)
    print(f"\nwritten to {path}")
    return figures


if __name__ == "__main__":
    main()
