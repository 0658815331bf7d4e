"""The engine in float16, run on the CPU with the tiny model: the GPU's dtype path without a GPU."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from api_schemas import JobRequest
from workers.engine import run_job
from workers.images import ImageResolver
from workers.models import ModelRegistry, ModelSpec
from workers.plan import plan_job
from workers.planning import plan_job_clips
from workers.tiny import TINY_DEFAULTS

SIZE = {"width": 64, "height": 64, "num_frames": 4, "steps": 3}


def load_image(path: Path) -> PIL.Image.Image:
    return PIL.Image.open(path).convert("RGB")


@pytest.fixture(scope="module")
def half(tiny_model_dir: Path) -> ModelRegistry:
    spec = ModelSpec(name="t", source=str(tiny_model_dir), dtype="float16", device="cpu", **TINY_DEFAULTS)
    return ModelRegistry({"t": spec}, default="t")


@pytest.fixture(scope="module")
def full(tiny_model_dir: Path) -> ModelRegistry:
    spec = ModelSpec(name="t", source=str(tiny_model_dir), dtype="float32", device="cpu", **TINY_DEFAULTS)
    return ModelRegistry({"t": spec}, default="t")


def steered(images: list[Path]) -> JobRequest:
    doc = {
        "seed": 11,
        "generation": SIZE,
        "output": {"raw": True, "preview": "none"},
        "keyframes": [{"image": str(images[0]), "at": 0.0}, {"image": str(images[1]), "at": 1.0}],
        "interpolation": "geodesic",
        "references": [{"image": str(images[2]), "weight": 0.5}],
        "variation": {"seed": 3, "strength": 0.2},
        "directions": [{"source": {"vector": [0.5] * 4}, "space": "latent", "strength": 0.3}],
        "style": {"image": str(images[3]), "strength": 0.5},
    }
    return JobRequest.model_validate(doc)


def test_a_steered_job_in_float16_finishes_close_to_float32(half, full, image_paths, tmp_path) -> None:
    job = steered(image_paths)
    resolver = ImageResolver(allow_paths=True)
    frames = {}
    for name, registry in (("half", half), ("full", full)):
        outputs = run_job(job, tmp_path / name, registry=registry, images=resolver)
        frames[name] = np.load(outputs.files["frames"])
    assert half.get("t").pipeline.unet.dtype == torch.float16
    assert np.isfinite(frames["half"]).all()
    assert np.abs(frames["half"] - frames["full"]).max() < 0.05


def test_latents_stay_float32_so_small_shifts_survive(half, image_paths) -> None:
    pipe = half.get("t").pipeline
    job = JobRequest.model_validate({"seed": 1, "image": str(image_paths[0]), "generation": SIZE})
    plan = plan_job(job, pipe, name="t", defaults={})
    planned = plan_job_clips(pipe, plan, {"image": load_image(image_paths[0])})
    conditioning, noise, _ = planned.stack(planned.clips)
    unet_inputs: list[torch.dtype] = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: unet_inputs.append(args[0].dtype))
    shift = 1e-4  # far below float16's rounding step at the latents' size

    def run(shifted: bool) -> torch.Tensor:
        def last_step(pipeline, i, t, tensors):  # type: ignore[no-untyped-def]
            assert tensors["latents"].dtype == torch.float32
            if shifted and i == SIZE["steps"] - 1:
                tensors["latents"] = tensors["latents"] + shift
            return tensors

        return pipe(conditioning, noise, SIZE["steps"], callback_on_step_end=last_step, output_type="latent")

    try:
        plain, moved = run(False), run(True)
    finally:
        hook.remove()
    assert set(unet_inputs) == {torch.float16}
    assert (moved - plain - shift).abs().max() < 1e-5


def test_a_failed_encode_leaves_the_vae_in_half_precision(half, image_paths, monkeypatch) -> None:
    pipe = half.get("t").pipeline
    assert pipe.vae.config.force_upcast  # the case where encoding switches the VAE to float32

    def out_of_memory(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("stand-in for a GPU out of memory")

    monkeypatch.setattr(pipe, "_encode_vae_image", out_of_memory)
    augmentation = torch.zeros(1, 3, SIZE["height"], SIZE["width"])
    with pytest.raises(torch.OutOfMemoryError):
        pipe.encode_image(load_image(image_paths[0]), SIZE["height"], SIZE["width"], augmentation, 0.02)
    assert pipe.vae.dtype == torch.float16
