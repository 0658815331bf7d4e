"""Attention in launches a CUDA kernel can take: the flash and memory-efficient kernels put the batch
in a grid dimension capped at 65,535, and SVD's temporal attention batches every latent pixel of
every row. The processors slice such batches; here the limit is lowered so the tiny model's
attention is sliced on the CPU, and the frames must not change."""

from pathlib import Path

import numpy as np
import pytest
import torch

from api_schemas import JobRequest
from workers import pipeline
from workers.engine import run_job
from workers.images import ImageResolver
from workers.models import ModelRegistry, ModelSpec
from workers.tiny import TINY_DEFAULTS


def steered(image_paths: list[Path]) -> JobRequest:
    """Keyframes (a per-frame context), a reference (a token bias mask) and a two-clip sweep."""
    return JobRequest.model_validate(
        {
            "seed": 3,
            "keyframes": [{"image": str(image_paths[0]), "at": 0.0}, {"image": str(image_paths[1]), "at": 1.0}],
            "references": [{"image": str(image_paths[2]), "weight": 0.7}],
            "sweep": {"target": "seed", "to": 8, "count": 2},
            "generation": {"width": 64, "height": 64, "num_frames": 5, "steps": 3},
            "output": {"raw": True, "preview": "none"},
        }
    )


def frames(registry: ModelRegistry, request: JobRequest, out: Path) -> np.ndarray:
    outputs = run_job(request, out, registry=registry, images=ImageResolver(allow_paths=True))
    return np.load(outputs.files["frames"])


class Counting:
    def __init__(self, inner, batches: list[int]) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.batches = inner, batches

    def __call__(self, attn, hidden_states, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.batches.append(hidden_states.shape[0])
        return self.inner(attn, hidden_states, *args, **kwargs)


def test_sliced_attention_gives_the_same_frames(
    tiny_model_dir: Path, image_paths: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry({"t": ModelSpec(name="t", source=str(tiny_model_dir), **TINY_DEFAULTS)}, default="t")
    whole = frames(registry, steered(image_paths), tmp_path / "whole")

    # Count the launches of the UNet's processors (the VAE keeps diffusers' own).
    batches: list[int] = []
    for processor in registry.get("t").pipeline.unet.attn_processors.values():
        assert isinstance(processor, pipeline.LaunchSafeProcessor)
        monkeypatch.setattr(processor, "inner", Counting(processor.inner, batches))
    monkeypatch.setattr(pipeline, "launch_limit", lambda device: 7)
    sliced = frames(registry, steered(image_paths), tmp_path / "sliced")

    assert batches and max(batches) <= 7
    assert sum(batches) > 7 * len(batches) // 2  # most launches are full slices: the batches were large
    # (the projections' matrix products round differently on smaller batches: 3e-6 seen)
    assert np.abs(sliced - whole).max() <= 1e-5


def test_a_context_without_a_row_per_batch_row_is_refused_not_sliced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "launch_limit", lambda device: 2)
    attn = pipeline.Attention(query_dim=8, heads=2, dim_head=4, cross_attention_dim=8)
    hidden, context = torch.randn(5, 3, 8), torch.randn(5, 1, 8)
    inner = pipeline.AttnProcessor2_0()
    exact = inner(attn, hidden, context)
    assert torch.allclose(pipeline.attend_in_launches(inner, attn, hidden, context, None), exact, atol=1e-6)
    with pytest.raises(RuntimeError, match="attention context has 1 rows for a batch of 5"):
        pipeline.attend_in_launches(inner, attn, hidden, context[:1], None)


def test_only_cuda_has_a_launch_limit() -> None:
    assert pipeline.launch_limit(torch.device("cpu")) is None
    assert pipeline.launch_limit(torch.device("cuda", 0)) == 65_535
