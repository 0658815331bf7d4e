"""(g) Live previews: the denoise stage with previews (the default, 10 per job) vs without.

The same job runs with an `on_preview` sink that does what the worker does with a preview short of
the Redis round trip (the JPEG strip made by the engine, then the `LivePreview` with its data URI and
its JSON event), and with none. Two figures: the ratio of the denoise stage's medians, interleaved
(noisy on a shared machine), and the seconds spent making previews (timed around each one) as a
share of the denoise stage (the direct measure). Target: ≤ 2% of the denoise stage.

`--size full` (the default on CUDA) runs the full SVD-XT architecture with random weights in float16
at 25 frames, 576x1024 and 25 steps.

    python -m bench.live_previews
    bash bench/gpu_device.sh --bench live_previews     # on a lent GPU machine
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import interleave, table, test_image, write_result
from bench.sweep_batching import model_spec

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 4},
    "medium": {"width": 256, "height": 128, "num_frames": 14, "steps": 20},
    "full": {"width": 1024, "height": 576, "num_frames": 25, "steps": 25},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="full on CUDA, medium elsewhere")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/live_previews.json)")
    args = parser.parse_args(argv)

    import workers.engine as engine
    from api_schemas import JobRequest, LivePreview
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, quiet_libraries
    from workers.preview import data_uri
    from workers.settings import EngineSettings

    quiet_libraries()
    if args.size is None:
        args.size = "full" if torch.cuda.is_available() else "medium"
    work = Path(tempfile.mkdtemp(prefix="vsteer-bench-"))
    spec_size = "full" if args.size == "full" else "small"
    registry = ModelRegistry({"m": model_spec(spec_size, work)}, default="m")
    model = registry.get("m")
    test_image(0).save(work / "image.png")
    job = JobRequest.model_validate(
        {"seed": 42, "image": str(work / "image.png"), "generation": SIZES[args.size], "output": {"preview": "none"}}
    )
    images = ImageResolver(allow_paths=True)
    settings = EngineSettings()  # previews: the deployment default

    # Time each preview where the engine makes it: the strip, then the sink.
    spent = {"s": 0.0, "count": 0, "bytes": 0}
    make_strip = engine.preview_strip

    def timed_strip(latents: torch.Tensor, colour_map: Any, *rest: Any) -> bytes:
        started = time.perf_counter()
        try:
            return make_strip(latents, colour_map, *rest)
        finally:
            spent["s"] += time.perf_counter() - started

    def sink(preview: Any) -> None:
        started = time.perf_counter()
        event = LivePreview(step=preview.step, total=preview.total, image=data_uri(preview.jpeg)).model_dump_json()
        spent["s"] += time.perf_counter() - started
        spent["count"] += 1
        spent["bytes"] = len(event)

    engine.preview_strip = timed_strip

    def run(on_preview: Any) -> dict[str, float]:
        before, count = spent["s"], spent["count"]
        outputs = engine.run_job(
            job, work / "out", registry=registry, images=images, on_preview=on_preview, settings=settings
        )
        timings = outputs.metrics["timings"]
        return {"denoise": timings["denoise"], "preview": spent["s"] - before, "count": spent["count"] - count}

    try:
        result = interleave({"previews": lambda: run(sink), "none": lambda: run(None)}, args.repeats)
    finally:
        engine.preview_strip = make_strip
    per_job = int(result.median("previews.count"))
    share = result.median("previews.preview") / result.median("previews.denoise")
    figures = {
        "size": {"name": args.size, **SIZES[args.size]},
        "device": model.device,
        "previews_per_job": per_job,
        "event_bytes": spent["bytes"],
        "runs": result.summary(),
        "denoise_previews_vs_none": result.ratio("previews.denoise", "none.denoise"),
        "preview_share_of_denoise": share,
        "target": {"preview_share_of_denoise": 0.02},
    }
    rows = [
        ["no previews", result.median("none.denoise"), 0.0, 1.0],
        [
            f"{per_job} previews",
            result.median("previews.denoise"),
            result.median("previews.preview"),
            figures["denoise_previews_vs_none"],
        ],
    ]
    print(
        table(
            f"live previews ({args.size}: {SIZES[args.size]}, {model.device}, {args.repeats} rounds); "
            f"previews take {100 * share:.2f}% of the denoise stage",
            ["variant", "denoise s (median)", "making previews s", "denoise ÷ none"],
            rows,
        )
    )
    print(f"\nwrote {write_result('live_previews', figures, args.out)}")
    shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
