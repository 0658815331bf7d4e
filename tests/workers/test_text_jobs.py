"""Text directions in jobs: a `text` source resolved on the job's model (`from_text` unset is the
empty prompt), fields named where the texts are, and a job whose UNet receives the image embedding
moved by strength·d, recorded in the manifest."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from api_schemas import DirectionSource, JobRequest
from tests.workers.test_text import NEUTRAL, SMILE, projected
from workers.directions import DirectionResolver, direction_digest
from workers.engine import run_job
from workers.errors import JobInputError
from workers.images import ImageResolver
from workers.models import ModelRegistry, ModelSpec
from workers.text import text_direction
from workers.tiny import TINY_DEFAULTS, build_tiny_text


def test_from_text_unset_is_the_empty_prompt(registry):
    model = registry.get("tiny")
    tower, tokenizer = build_tiny_text()
    a, empty = projected(tower, tokenizer, SMILE), projected(tower, tokenizer, "")
    resolver = DirectionResolver().with_text(lambda text, from_text: text_direction(model, text, from_text))
    d = resolver.vector(DirectionSource(text=SMILE), "directions[0].source")
    assert torch.allclose(d, (a - empty) / (a - empty).norm(), atol=1e-6)


def test_a_job_field_names_where_the_texts_are(registry):
    resolver = DirectionResolver().with_text(
        lambda text, from_text: text_direction(registry.get("tiny"), text, from_text)
    )
    with pytest.raises(JobInputError) as caught:
        resolver.vector(DirectionSource(text=SMILE, from_text=SMILE), "directions[2].preserve[0]")
    assert caught.value.field == "directions[2].preserve[0].from_text"


def test_a_resolver_never_bound_to_a_model_names_the_source():
    # Planning outside the engine (no model bound): the same input error, under the source.
    with pytest.raises(JobInputError) as unbound:
        DirectionResolver().vector(DirectionSource(text=SMILE), "directions[0].source")
    assert unbound.value.field == "directions[0].source.text"
    assert "text_encoder_missing" in unbound.value.detail


# -- a job -----------------------------------------------------------------------------------------

SIZE = {"width": 64, "height": 64, "num_frames": 5, "steps": 2, "guidance": {"min": 1.0, "max": 1.0}}


def job(image: Path, **fields) -> JobRequest:
    doc = {"seed": 3, "image": str(image), "generation": SIZE, "output": {"raw": True, "preview": "none"}}
    return JobRequest.model_validate({**doc, **fields})


class ContextSpy:
    """What one spatial cross-attention of the UNet attends to on each call: (F, 1, D) per call."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.context: list[torch.Tensor] = []
        spatial = next(m for n, m in unet.named_modules() if n.endswith("attn2") and "temporal" not in n)
        self.handle = spatial.to_v.register_forward_pre_hook(lambda module, args: self.context.append(args[0].clone()))


def run_spied(registry, request: JobRequest, out: Path) -> tuple[torch.Tensor, dict, np.ndarray]:
    spy = ContextSpy(registry.get("tiny").pipeline.unet)
    try:
        outputs = run_job(request, out, registry=registry, images=ImageResolver(allow_paths=True))
    finally:
        spy.handle.remove()
    return spy.context[0], outputs.manifest, np.load(outputs.files["frames"])


def test_a_text_direction_moves_the_unets_image_embedding_by_strength_times_d(registry, image_paths, tmp_path):
    d = text_direction(registry.get("tiny"), SMILE, NEUTRAL)
    ramp = {"from": 0.0, "to": 2.0, "over": "frames"}
    source = {"text": SMILE, "from_text": NEUTRAL}
    before, _, _ = run_spied(registry, job(image_paths[0]), tmp_path / "plain")
    moved, manifest, frames = run_spied(
        registry, job(image_paths[0], directions=[{"source": source, "strength": ramp}]), tmp_path / "text"
    )
    assert moved.shape == (5, 1, 32)
    shift = moved[:, 0] - before[:, 0]
    assert torch.allclose(shift @ d, torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]), atol=1e-5)
    assert torch.allclose(shift, (shift @ d)[:, None] * d, atol=1e-5)

    # The manifest records the texts and the vector they gave; the same vector inline gives the same frames.
    (described,) = manifest["steering"]["directions"]["directions"]
    assert described["source"] == "text" and (described["text"], described["from_text"]) == (SMILE, NEUTRAL)
    assert described["sha256"] == direction_digest(d)
    inline = job(image_paths[0], directions=[{"source": {"vector": d.tolist()}, "strength": ramp}])
    _, _, inline_frames = run_spied(registry, inline, tmp_path / "inline")
    np.testing.assert_array_equal(frames, inline_frames)
    assert json.loads((tmp_path / "text" / "manifest.json").read_text())["model"]["text_encoder"]["width"] == 32


def test_a_job_on_a_model_without_a_text_encoder_fails_as_an_input_error(tiny_model_dir, image_paths, tmp_path):
    copy = shutil.copytree(
        tiny_model_dir, tmp_path / "bare", ignore=shutil.ignore_patterns("text_encoder", "tokenizer")
    )
    spec = ModelSpec("bare", str(copy), **TINY_DEFAULTS)  # type: ignore[arg-type]
    bare = ModelRegistry({"bare": spec}, "bare")
    request = job(image_paths[0], model="bare", directions=[{"source": {"text": SMILE}}])
    with pytest.raises(JobInputError) as caught:
        run_job(request, tmp_path / "out", registry=bare, images=ImageResolver(allow_paths=True))
    assert caught.value.field == "directions[0].source.text"
    assert "model 'bare' has no text encoder" in caught.value.detail
