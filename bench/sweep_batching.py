"""(c) Sweep batching: one sweep of `count` clips batched through the UNet vs `count` separate jobs.

The sweep is `{target: seed, to: 1234, count: 4}` (clip k slerps the noise toward seed 1234 by
u_k = k / 3); the separate jobs are the same four clips as single jobs (`variation: {seed: 1234,
strength: u_k}`), run one after another. Throughput ratio = sequential seconds ÷ batched seconds.
Target: ≥ 1.10 on a GPU, never below 1.0 on the CPU.

`--size full` (the default on CUDA) runs the full SVD-XT architecture with random weights in float16
at 25 frames, 576x1024 and 10 steps (the ratio hardly depends on the step count), saved once with
`save_pretrained` and loaded through the worker's `ModelSpec` path. `--size full-thumb` is the same
model at a thumbnail, to check that path on any machine.

    python -m bench.sweep_batching
    bash bench/gpu_device.sh --bench sweep_batching     # on a lent GPU machine
"""

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.common import interleave, table, test_image, tiny_model_dir, write_result

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 2},
    "small": {"width": 128, "height": 64, "num_frames": 8, "steps": 6},
    "full": {"width": 1024, "height": 576, "num_frames": 25, "steps": 10},
    "full-thumb": {"width": 128, "height": 64, "num_frames": 3, "steps": 2},
}


def model_spec(size: str, work: Path) -> Any:
    """The tiny model for the small sizes; the full SVD-XT architecture, saved under `work`, for the others."""
    from workers.models import ModelSpec

    if not size.startswith("full"):
        return ModelSpec(name="m", source=str(tiny_model_dir()))
    from bench.gpu_svd import SIZES as ARCHITECTURES
    from bench.gpu_svd import save_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = save_model(ARCHITECTURES["full"], work / "svd-xt-random", device)
    shape = {k: SIZES[size][k] for k in ("width", "height", "num_frames")}
    return ModelSpec(name="m", source=str(folder), **shape)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="full on CUDA, small elsewhere")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/sweep_batching.json)")
    args = parser.parse_args(argv)

    from api_schemas import JobRequest
    from workers.engine import run_job
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, quiet_libraries

    quiet_libraries()
    if args.size is None:
        args.size = "full" if torch.cuda.is_available() else "small"
    work = Path(tempfile.mkdtemp(prefix="vsteer-bench-"))
    registry = ModelRegistry({"m": model_spec(args.size, work)}, default="m")
    model = registry.get("m")
    test_image(0).save(work / "image.png")
    base = {
        "seed": 42,
        "image": str(work / "image.png"),
        "generation": SIZES[args.size],
        "output": {"preview": "none"},
    }
    count = args.count
    sweep = JobRequest.model_validate({**base, "sweep": {"target": "seed", "to": 1234, "count": count}})
    singles = [
        JobRequest.model_validate({**base, "variation": {"seed": 1234, "strength": k / (count - 1)}})
        for k in range(count)
    ]
    images = ImageResolver(allow_paths=True)

    resolved: dict[str, Any] = {}

    def batched() -> dict[str, float]:
        outputs = run_job(sweep, work / "sweep", registry=registry, images=images)
        resolved.update(outputs.manifest["request"]["sweep"])  # the clips per batch the engine chose
        return {"denoise": outputs.metrics["timings"]["denoise"]}

    def sequential() -> dict[str, float]:
        denoise = 0.0
        for k, job in enumerate(singles):
            denoise += run_job(job, work / f"single{k}", registry=registry, images=images).metrics["timings"]["denoise"]
        return {"denoise": denoise}

    result = interleave({"batched": batched, "sequential": sequential}, args.repeats)
    figures = {
        "size": {"name": args.size, **SIZES[args.size]},
        "count": count,
        "batch_size": resolved["batch_size"],
        "device": model.device,
        "runs": result.summary(),
        "throughput_batched_vs_sequential": result.ratio("sequential", "batched"),
        "denoise_throughput_batched_vs_sequential": result.ratio("sequential.denoise", "batched.denoise"),
        "target": {"gpu": 1.10, "cpu_floor": 1.0},
    }
    rows = [
        [f"{count} sequential jobs", result.median("sequential"), result.median("sequential.denoise"), 1.0, 1.0],
        [
            f"sweep of {count}, batched by {resolved['batch_size']}",
            result.median("batched"),
            result.median("batched.denoise"),
            figures["throughput_batched_vs_sequential"],
            figures["denoise_throughput_batched_vs_sequential"],
        ],
    ]
    print(
        table(
            f"sweep batching ({args.size}: {SIZES[args.size]}, {model.device}, {args.repeats} rounds)",
            ["variant", "s (median)", "denoise s", "throughput ×", "denoise throughput ×"],
            rows,
        )
    )
    print(f"\nwrote {write_result('sweep_batching', figures, args.out)}")
    shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
