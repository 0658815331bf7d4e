"""The GPU fast path's settings applied to the tiny model on the CPU: they must load and change
nothing but speed (the CUDA-only parts, timing and memory, are measured by `bench.gpu_svd`)."""

from pathlib import Path

import numpy as np
import torch

from api_schemas import JobRequest
from workers.engine import run_job
from workers.images import ImageResolver
from workers.models import FastPath, ModelRegistry, ModelSpec, channels_last_convs
from workers.settings import EngineSettings
from workers.tiny import TINY_DEFAULTS

DOC = {"seed": 5, "generation": {"width": 64, "height": 64, "num_frames": 5, "steps": 3}, "output": {"raw": True}}


def frames(registry: ModelRegistry, image: Path, out: Path) -> np.ndarray:
    request = JobRequest.model_validate({**DOC, "image": str(image)})
    outputs = run_job(request, out, registry=registry, images=ImageResolver(allow_paths=True))
    return np.load(outputs.files["frames"])


def test_channels_last_reaches_every_2d_conv_and_leaves_the_3d_ones(tiny_model_dir: Path) -> None:
    registry = ModelRegistry({"t": ModelSpec(name="t", source=str(tiny_model_dir), **TINY_DEFAULTS)}, default="t")
    pipe = registry.get("t").pipeline
    conv3d = [m for m in pipe.vae.modules() if isinstance(m, torch.nn.Conv3d)]
    assert conv3d, "the temporal decoder has 3-D convolutions: the case that must not fail"
    assert channels_last_convs(pipe.unet) > 0 and channels_last_convs(pipe.vae) > 0
    for module in (pipe.unet, pipe.vae):
        for m in module.modules():
            if isinstance(m, torch.nn.Conv2d):
                assert m.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(m.weight.is_contiguous() for m in conv3d)


def test_the_cuda_settings_on_the_cpu_give_the_same_frames(
    tiny_model_dir: Path, image_paths: list[Path], tmp_path: Path, monkeypatch
) -> None:
    spec = ModelSpec(name="t", source=str(tiny_model_dir), **TINY_DEFAULTS)
    plain = frames(ModelRegistry({"t": spec}, default="t"), image_paths[0], tmp_path / "plain")
    # channels_last and the warm-up, as on CUDA (compile is opt-in and slow on the CPU)
    cuda_like = FastPath(channels_last=True, warm_up=True, autotune=True)
    monkeypatch.setattr(FastPath, "for_device", classmethod(lambda cls, device, settings=None: cuda_like))
    try:
        fast = frames(ModelRegistry({"t": spec}, default="t"), image_paths[0], tmp_path / "fast")
    finally:
        torch.backends.cudnn.benchmark = False
    assert np.abs(fast - plain).max() < 1e-5


def test_cuda_defaults_keep_replays_exact_and_autotune_is_opt_in() -> None:
    """cuDNN's autotune picks kernels by timing them, so two processes may round differently and a
    manifest would no longer replay bit for bit: it stays off unless asked for."""
    default = FastPath.for_device("cuda:0")
    assert (default.channels_last, default.warm_up, default.autotune, default.compile) == (True, True, False, False)
    assert FastPath.for_device("cuda", EngineSettings(cudnn_autotune="1")).autotune
    assert not FastPath.for_device("cpu", EngineSettings(cudnn_autotune="1")).autotune
    assert FastPath.for_device("cuda", EngineSettings(fast="0")) == FastPath()


def test_the_manifest_records_the_fast_path_and_the_device_it_ran_on(
    tiny_model_dir: Path, image_paths: list[Path], tmp_path: Path
) -> None:
    spec = ModelSpec(name="t", source=str(tiny_model_dir), **TINY_DEFAULTS)
    registry = ModelRegistry({"t": spec}, default="t")
    request = JobRequest.model_validate({**DOC, "image": str(image_paths[0])})
    manifest = run_job(request, tmp_path, registry=registry, images=ImageResolver(allow_paths=True)).manifest
    assert manifest["model"]["fast_path"] == {"channels_last": False, "compile": False, "cudnn_autotune": False}
    assert manifest["model"]["device_name"].startswith("cpu")
