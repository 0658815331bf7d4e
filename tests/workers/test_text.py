"""Text directions on the tiny model's text tower: d = normalize(E_text(text) − E_text(from_text)),
the tiny build's text tower and tokenizer through `from_pretrained`, and the loader's checks of a
spec's `text_encoder` (its width against the image embedding's, a folder that is not there)."""

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from workers.errors import JobInputError, ModelUnavailableError
from workers.models import ModelRegistry, ModelSpec, builtin_specs, resolve_folder
from workers.text import text_direction
from workers.tiny import TINY_CONTEXT, TINY_DEFAULTS, build_tiny_svd, build_tiny_text, small_text_encoder

SMILE, NEUTRAL = "a smiling face", "a neutral face"


def projected(model: CLIPTextModelWithProjection, tokenizer: CLIPTokenizer, prompt: str) -> torch.Tensor:
    """CLIP's text embedding of one prompt, written out: the projected end-of-text state, unit length."""
    ids = tokenizer(prompt, padding="max_length", max_length=TINY_CONTEXT, return_tensors="pt").input_ids
    with torch.no_grad():
        embed = model(input_ids=ids).text_embeds[0]
    return embed / embed.norm()


# -- the math --------------------------------------------------------------------------------------


def test_a_text_direction_is_the_normalised_difference_of_the_projected_embeddings(registry):
    model = registry.get("tiny")
    tower, tokenizer = build_tiny_text()  # the weights save_tiny_svd wrote, built in memory
    a, b = projected(tower, tokenizer, SMILE), projected(tower, tokenizer, NEUTRAL)
    want = (a - b) / (a - b).norm()

    d = text_direction(model, SMILE, NEUTRAL)
    assert d.shape == (32,) and d.dtype == torch.float32
    assert torch.allclose(d, want, atol=1e-6)
    assert float(d.norm()) == pytest.approx(1.0, abs=1e-6)
    # The opposite pair points the other way; a different pair another way.
    assert torch.allclose(text_direction(model, NEUTRAL, SMILE), -want, atol=1e-6)
    assert float(text_direction(model, SMILE, "a frowning face") @ d) < 0.999


@pytest.mark.parametrize(("text", "from_text"), [(SMILE, SMILE), ("A Smiling  Face", SMILE)])
def test_texts_that_give_the_same_embedding_are_refused_as_no_direction(registry, text, from_text):
    # CLIP lowercases and folds whitespace: the second pair is the same tokens, so a zero difference.
    with pytest.raises(JobInputError) as caught:
        text_direction(registry.get("tiny"), text, from_text)
    assert caught.value.field == "from_text"
    assert "no direction" in caught.value.detail


def test_a_model_without_a_text_encoder_fails_naming_the_field(registry):
    bare = dataclasses.replace(registry.get("tiny"), text=None)
    with pytest.raises(JobInputError) as caught:
        text_direction(bare, SMILE, NEUTRAL)
    assert caught.value.field == "text" and "text_encoder_missing" in caught.value.detail


# -- the tiny build and the loader -----------------------------------------------------------------


def test_the_tiny_build_round_trips_through_from_pretrained(tiny_model_dir, registry):
    tower, tokenizer = build_tiny_text()
    loaded = CLIPTextModelWithProjection.from_pretrained(tiny_model_dir / "text_encoder", local_files_only=True)
    loaded_tokenizer = CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer", local_files_only=True)
    assert loaded.config.projection_dim == registry.get("tiny").pipeline.image_encoder.config.projection_dim
    for (name, want), (_, got) in zip(tower.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(want, got), name
    prompts = [SMILE, "", "the thing is on the ground"]
    assert loaded_tokenizer(prompts).input_ids == tokenizer(prompts).input_ids
    # Merges apply (`the` is one token), and a prompt is start, tokens, end.
    ids = loaded_tokenizer("the").input_ids
    assert ids == [loaded_tokenizer.bos_token_id, loaded_tokenizer.convert_tokens_to_ids("the</w>"), 1]
    assert torch.allclose(projected(loaded, loaded_tokenizer, SMILE), projected(tower, tokenizer, SMILE), atol=1e-6)
    # The registry's model loaded it and describes it for the manifest.
    described = registry.get("tiny").describe()["text_encoder"]
    assert described["width"] == 32 and described["weight_hash"].startswith("sha256:")


def test_building_the_text_tower_leaves_the_pipeline_weights_and_the_random_state_alone():
    torch.manual_seed(3)
    build_tiny_text(seed=9)
    after = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(4))
    # Seeds give the same text weights every time, whatever ran before.
    first = build_tiny_text(seed=1)[0].state_dict()
    torch.rand(100)
    again = build_tiny_text(seed=1)[0].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert build_tiny_svd(0).unet.state_dict().keys()  # the pipeline builds as before


def test_a_built_in_tiny_made_before_it_had_a_text_tower_gets_one(tmp_path):
    spec = builtin_specs(tmp_path)["tiny"]
    assert spec.text_encoder == spec.source
    build_tiny_svd(0).save_pretrained(tmp_path / "tiny-svd", safe_serialization=True)
    unet = (tmp_path / "tiny-svd" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    folder = resolve_folder(spec)
    assert (folder / "text_encoder" / "config.json").is_file() and (folder / "tokenizer").is_dir()
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == unet  # the weights stay


def test_a_folder_given_as_the_model_brings_its_text_tower(tiny_model_dir):
    registry = ModelRegistry({"tiny": ModelSpec("tiny", "unused")}, "tiny")
    name = registry.register(str(tiny_model_dir))
    assert registry.specs[name].text_encoder == str(tiny_model_dir.resolve())


def narrow_text_folder(folder: Path, projection_dim: int) -> Path:
    """A text encoder folder (CLIP checkpoint layout: model and tokenizer at the root)."""
    _, tokenizer = build_tiny_text()
    config = small_text_encoder(tokenizer).config
    config.projection_dim = projection_dim
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_loader_refuses_a_text_tower_of_another_width(tiny_model_dir, tmp_path):
    folder = narrow_text_folder(tmp_path / "narrow", 16)
    spec = ModelSpec("narrow", str(tiny_model_dir), text_encoder=str(folder), **TINY_DEFAULTS)  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailableError) as caught:
        ModelRegistry({"narrow": spec}, "narrow").get("narrow")
    assert "`text_encoder`" in caught.value.detail
    assert "projects to 16 dimensions, the image encoder's embedding has 32" in caught.value.detail
    # The same layout at the right width loads from its root.
    right = dataclasses.replace(spec, name="right", text_encoder=str(narrow_text_folder(tmp_path / "right", 32)))
    assert ModelRegistry({"right": right}, "right").get("right").text is not None


def test_a_missing_text_encoder_folder_names_the_field(tiny_model_dir, tmp_path):
    spec = ModelSpec("gone", str(tiny_model_dir), text_encoder=str(tmp_path / "nowhere"), **TINY_DEFAULTS)  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailableError, match=r"`text_encoder` folder .* does not exist"):
        ModelRegistry({"gone": spec}, "gone").get("gone")
    not_cached = dataclasses.replace(spec, text_encoder="laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    with pytest.raises(ModelUnavailableError, match="not in the local hub cache"):
        ModelRegistry({"gone": not_cached}, "gone").get("gone")
