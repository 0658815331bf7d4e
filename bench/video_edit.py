"""Video editing: a `video` edit's time and UNet calls against a plain job of the same size, side by side.

An edit at `strength` s runs round(s · steps) of the job's steps (SDEdit), plus, with `noise: inverted`,
as many inversion calls; it also reads and VAE-encodes the clip, where a plain job encodes one image.
Variants, interleaved in one run: the plain job (image-to-video), edits at strength 0.25, 0.5 and 0.75
with random noise, and the edit at 0.5 with inverted noise. Ratios are of whole-job seconds (the
engine's `total`: load, encode, denoise, decode, outputs) and of the process's CPU seconds over the
job (with `--threads 1`, the work done: a thread waiting for a busy machine's cores, or spinning
for its peers, adds none). Target: edit at 0.5 ÷ plain ≤ 0.55, at a size where the plain job takes
≥ 5 s: `--size cpu`, 100 steps, where denoising is most of a job as it is for SVD's own weights (the
tiny model's VAE decode and the outputs cost as much as 8 of its UNet calls; `--size cpu-25-steps`
shows how they weigh at 25 steps).

    python -m bench.video_edit
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import interleave, table, test_image, tiny_model_dir, write_result

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 4},
    "cpu": {"width": 128, "height": 64, "num_frames": 8, "steps": 100},
    "cpu-25-steps": {"width": 128, "height": 64, "num_frames": 8, "steps": 25},
    "large": {"width": 256, "height": 256, "num_frames": 14, "steps": 25},
}
EDITS = {
    "edit 25%": {"strength": 0.25},
    "edit 50%": {"strength": 0.5},
    "edit 75%": {"strength": 0.75},
    "edit 50% inverted": {"strength": 0.5, "noise": "inverted"},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (1: CPU seconds count work, not waiting)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/video_edit.json)")
    args = parser.parse_args(argv)

    from api_schemas import JobRequest
    from vsteer.pictures import panning_clip
    from workers.engine import run_job
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, ModelSpec, quiet_libraries

    quiet_libraries()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    work = Path(tempfile.mkdtemp(prefix="vsteer-bench-"))
    registry = ModelRegistry({"m": ModelSpec(name="m", source=str(tiny_model_dir()))}, default="m")
    model = registry.get("m")
    test_image(0).save(work / "image.png")
    clip = work / "clip.mp4"
    clip.write_bytes(panning_clip(0, (size["width"], size["height"]), frames=2 * size["num_frames"], fps=7))
    base = {"seed": 42, "generation": {**size, "fps": 7}, "output": {"preview": "none"}}
    jobs = {"plain": JobRequest.model_validate({**base, "image": str(work / "image.png")})}
    for name, edit in EDITS.items():
        jobs[name] = JobRequest.model_validate({**base, "video": {"source": str(clip), **edit}})
    images = ImageResolver(allow_paths=True)

    calls: dict[str, int] = {}
    counted = [0]
    hook = model.pipeline.unet.register_forward_pre_hook(lambda module, args: counted.__setitem__(0, counted[0] + 1))

    def runner(name: str):
        def run() -> dict[str, float]:
            counted[0] = 0
            cpu = time.process_time()
            outputs = run_job(jobs[name], work / name.replace(" ", "-"), registry=registry, images=images)
            cpu = time.process_time() - cpu
            calls[name] = counted[0]
            timings = outputs.metrics["timings"]
            return {"denoise": timings["denoise"], "encode": timings["encode"], "cpu": cpu}

        return run

    try:
        result = interleave({name: runner(name) for name in jobs}, args.repeats, warmup=args.warmup)
    finally:
        hook.remove()
    ratios = {name: result.ratio(name, "plain") for name in EDITS}
    figures = {
        "size": {"name": args.size, **size},
        "device": model.device,
        "torch_threads": args.threads,
        "runs": result.summary(),
        "unet_calls": calls,
        "time_vs_plain": ratios,
        "cpu_time_vs_plain": {name: result.ratio(f"{name}.cpu", "plain.cpu") for name in EDITS},
        "denoise_vs_plain": {name: result.ratio(f"{name}.denoise", "plain.denoise") for name in EDITS},
        "plain_job_s": result.median("plain"),
        "target": {"edit 50%": 0.55, "plain_job_s_at_least": 5.0},
    }
    cpu_ratios = {"plain": 1.0, **figures["cpu_time_vs_plain"]}
    ratios_row = {"plain": 1.0, **ratios}
    rows = [
        [
            name,
            calls[name],
            result.median(name),
            result.median(f"{name}.denoise"),
            ratios_row[name],
            result.median(f"{name}.cpu"),
            cpu_ratios[name],
        ]
        for name in jobs
    ]
    print(
        table(
            f"video edit ({args.size}: {size}, {model.device}, {args.repeats} rounds)",
            ["variant", "UNet calls", "job s (median)", "denoise s", "time ÷ plain", "CPU s", "CPU time ÷ plain"],
            rows,
        )
    )
    print(f"\nwrote {write_result('video_edit', figures, args.out)}")
    shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
