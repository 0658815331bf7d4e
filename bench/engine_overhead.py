"""(a) Engine overhead: a steered job vs a bare diffusers `StableVideoDiffusionPipeline` call.

Same weights, same first image, same seed, same size and steps. Variants, interleaved:

- `bare`: `StableVideoDiffusionPipeline(image, …, output_type="np")`;
- `plain`: `run_job` with the image only (what a client gets for an unsteered job);
- `steered`: `run_job` with keyframes, a reference, a variation, an embedding direction, a latent
  direction and a style reference.

`run_job` also audits the clip and encodes the MP4, poster and manifest, which a bare call does not;
the *engine* time is the engine's own stages (load images, encode, denoise, decode) and the ratio
that the ≤ 1.03 target is about. The whole job's time is reported beside it.

    python -m bench.engine_overhead                  # tiny model, CPU-sized
    python -m bench.engine_overhead --size medium --repeats 4
    python -m bench.engine_overhead --repeats 1 --size tiny
"""

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.common import interleave, table, test_image, tiny_model_dir, write_result

SIZES = {
    "tiny": {"width": 64, "height": 64, "num_frames": 4, "steps": 2},
    "small": {"width": 128, "height": 64, "num_frames": 8, "steps": 8},
    # A job that takes seconds, as real ones do: the fixed cost of encoding the extra images of a
    # steered job is then its real share.
    "medium": {"width": 256, "height": 128, "num_frames": 14, "steps": 20},
}
ENGINE_STAGES = ("load", "encode", "denoise", "decode")


def steered_document(images: list[Path], size: dict[str, int], embedding_dim: int, steered: bool) -> dict[str, Any]:
    generation = dict(size)
    doc: dict[str, Any] = {"seed": 42, "generation": generation, "output": {"preview": "none"}}
    if not steered:
        doc["image"] = str(images[0])
        return doc
    direction = [1.0 if i == 0 else 0.0 for i in range(embedding_dim)]
    latent_direction = [0.5] * 4  # one value per latent channel, broadcast over positions
    doc.update(
        {
            "keyframes": [{"image": str(images[0]), "at": 0.0}, {"image": str(images[1]), "at": 1.0}],
            "interpolation": "slerp",
            "references": [{"image": str(images[2]), "weight": 0.5}],
            "variation": {"seed": 7, "strength": 0.2},
            "directions": [
                {"source": {"vector": direction}, "space": "embedding", "strength": 0.5},
                {"source": {"vector": latent_direction}, "space": "latent", "strength": 0.1},
            ],
            "style": {"image": str(images[3]), "strength": 0.3, "steps": [0.0, 0.5]},
        }
    )
    return doc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved rounds (each runs every variant)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/engine_overhead.json)")
    args = parser.parse_args(argv)

    from diffusers import StableVideoDiffusionPipeline

    from api_schemas import JobRequest
    from workers.engine import run_job
    from workers.images import ImageResolver
    from workers.models import ModelRegistry, ModelSpec, quiet_libraries

    # 1. the model, loaded both ways from the same folder, and the inputs on disk
    quiet_libraries()
    folder = tiny_model_dir()
    size = SIZES[args.size]
    registry = ModelRegistry({"m": ModelSpec(name="m", source=str(folder))}, default="m")
    model = registry.get("m")
    bare_pipe = StableVideoDiffusionPipeline.from_pretrained(folder).to(model.device)
    bare_pipe.set_progress_bar_config(disable=True)
    work = Path(tempfile.mkdtemp(prefix="vsteer-bench-"))
    images = []
    for seed in range(4):
        images.append(work / f"image{seed}.png")
        test_image(seed).save(images[-1])
    embedding_dim = int(model.pipeline.image_encoder.config.projection_dim)
    jobs = {
        name: JobRequest.model_validate(steered_document(images, size, embedding_dim, steered))
        for name, steered in (("plain", False), ("steered", True))
    }
    resolver = ImageResolver(allow_paths=True)
    first = test_image(0)

    # 2. the variants
    def bare() -> None:
        generator = torch.Generator(model.device).manual_seed(42)
        bare_pipe(
            first,
            width=size["width"],
            height=size["height"],
            num_frames=size["num_frames"],
            num_inference_steps=size["steps"],
            generator=generator,
            output_type="np",
        )

    def job(name: str):  # type: ignore[no-untyped-def]
        def run() -> dict[str, float]:
            timings = run_job(jobs[name], work / name, registry=registry, images=resolver).metrics["timings"]
            return {"engine": sum(timings[s] for s in ENGINE_STAGES), **timings}

        return run

    # 3. interleave and report
    result = interleave({"bare": bare, "plain": job("plain"), "steered": job("steered")}, args.repeats)
    figures = {
        "size": {"name": args.size, **size},
        "device": model.device,
        "dtype": str(model.dtype).removeprefix("torch."),
        "runs": result.summary(),
        "ratios": {
            "plain_engine_vs_bare": result.ratio("plain.engine", "bare"),
            "steered_engine_vs_bare": result.ratio("steered.engine", "bare"),
            "plain_job_vs_bare": result.ratio("plain", "bare"),
            "steered_job_vs_bare": result.ratio("steered", "bare"),
        },
        "target": {"steered_engine_vs_bare": 1.03},
    }
    ratios = figures["ratios"]
    rows = [
        ["bare diffusers", result.median("bare"), "", 1.0, ""],
        ["vsteer plain", result.median("plain"), result.median("plain.engine"), ratios["plain_engine_vs_bare"],
         ratios["plain_job_vs_bare"]],
        ["vsteer steered", result.median("steered"), result.median("steered.engine"),
         ratios["steered_engine_vs_bare"], ratios["steered_job_vs_bare"]],
    ]  # fmt: skip
    print(
        table(
            f"engine overhead ({args.size}: {size}, {model.device}, {args.repeats} rounds)",
            ["variant", "job s (median)", "engine s (median)", "engine ÷ bare", "job ÷ bare"],
            rows,
        )
    )
    print(f"\nwrote {write_result('engine_overhead', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
