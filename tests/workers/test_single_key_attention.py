"""Cross-attention over a single key. SVD's UNet attends to one CLIP token (the image embedding) in
every cross-attention, spatial and temporal; with one key the softmax weight is 1 for every query,
so the output is the projected value, whatever the queries. The engine's processors skip the query
and key projections and the attention there, and fall back to the full path when there are more
tokens (references) or a mask."""

from pathlib import Path

import numpy as np
import pytest
import torch

from api_schemas import JobRequest
from workers import pipeline
from workers.engine import run_job
from workers.images import ImageResolver


def attention(**kwargs) -> pipeline.Attention:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return pipeline.Attention(query_dim=8, heads=2, dim_head=4, cross_attention_dim=6, **kwargs)


def calls_of(module: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    return seen


@pytest.mark.parametrize("options", [{}, {"residual_connection": True, "out_bias": True, "bias": True}])
def test_one_key_gives_the_full_attention_output_without_queries(options: dict) -> None:
    attn = attention(**options)
    queries = calls_of(attn.to_q)
    hidden, context = torch.randn(5, 7, 8), torch.randn(5, 1, 6)
    exact = pipeline.AttnProcessor2_0()(attn, hidden, context)

    fast = pipeline.LaunchSafeProcessor()(attn, hidden, context)

    assert len(queries) == 1  # the stock processor's call only
    assert fast.shape == exact.shape
    assert torch.allclose(fast, exact, atol=1e-6)


def test_several_keys_or_a_mask_take_the_full_path() -> None:
    attn = attention()
    queries = calls_of(attn.to_q)
    hidden, context = torch.randn(5, 7, 8), torch.randn(5, 3, 6)
    processor = pipeline.LaunchSafeProcessor()

    several = processor(attn, hidden, context)
    assert torch.allclose(several, pipeline.AttnProcessor2_0()(attn, hidden, context), atol=1e-6)
    masked = processor(attn, hidden, context[:, :1], torch.zeros(5, 1, 1))
    assert torch.allclose(masked, pipeline.AttnProcessor2_0()(attn, hidden, context[:, :1]), atol=1e-6)
    assert len(queries) == 4  # both processors projected queries both times


def job(image_paths: list[Path], **fields) -> JobRequest:  # type: ignore[no-untyped-def]
    doc = {
        "seed": 5,
        "image": str(image_paths[0]),
        "generation": {"width": 64, "height": 64, "num_frames": 5, "steps": 2},
        "output": {"raw": True, "preview": "none"},
    }
    return JobRequest.model_validate(doc | fields)


def test_a_job_projects_cross_attention_queries_only_with_reference_tokens(
    registry, image_paths: list[Path], tmp_path: Path
) -> None:
    unet = registry.get().pipeline.unet
    queries: list[int] = []
    handles = [
        module.to_q.register_forward_pre_hook(lambda m, args: queries.append(1))
        for name, module in unet.named_modules()
        if name.endswith("attn2")
    ]
    try:
        images = ImageResolver(allow_paths=True)
        plain = run_job(job(image_paths), tmp_path / "plain", registry=registry, images=images)
        assert queries == []  # one token everywhere: no cross-attention queries at all
        reference = {"references": [{"image": str(image_paths[1]), "weight": 0.5}]}
        run_job(job(image_paths, **reference), tmp_path / "ref", registry=registry, images=images)
        assert queries  # two tokens: the full path
    finally:
        for handle in handles:
            handle.remove()
    assert np.isfinite(np.load(plain.files["frames"])).all()
