"""Training the toy model is deterministic for a seed, and what it saves loads as a pipeline."""

import pytest
import torch
from diffusers import StableVideoDiffusionPipeline

from workers.models import ModelRegistry, weight_hash
from workers.settings import engine_defaults
from workers.toy.train import TrainConfig, train_toy


def test_two_runs_with_one_seed_save_the_same_weights_and_another_seed_others(tmp_path):
    folders = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        folders[name] = train_toy(tmp_path / name, TrainConfig.short(2, seed=seed), log=lambda line: None).folder
    hashes = {name: weight_hash(folder) for name, folder in folders.items()}
    assert hashes["a"] == hashes["b"]
    assert hashes["a"] != hashes["c"]
    pipe = StableVideoDiffusionPipeline.from_pretrained(folders["a"])
    assert pipe.unet.config.num_frames == 8 and pipe.vae.config.scaling_factor != 0.18215


def test_a_trained_folder_runs_at_the_size_and_frames_it_was_trained_for(tmp_path):
    folder = train_toy(tmp_path / "toy", TrainConfig.short(1), log=lambda line: None).folder
    registry = ModelRegistry.from_settings(engine_defaults())
    spec = registry.spec(registry.register(str(folder)))
    assert (spec.width, spec.height, spec.num_frames) == (64, 64, 8)


@pytest.mark.parametrize("variant", ["colour_tokens", "colour_finish"])
def test_the_variants_train_the_image_encoder_and_are_deterministic_too(tmp_path, variant):
    config = TrainConfig.short(4, variant=variant)
    runs = [train_toy(tmp_path / name, config, log=lambda line: None) for name in ("a", "b")]
    assert weight_hash(runs[0].folder) == weight_hash(runs[1].folder)
    assert len(runs[0].losses["unet"]) == config.unet_steps  # a colour-swapping phase, if any, is among them
    shipped = train_toy(tmp_path / "shipped", TrainConfig.short(4), log=lambda line: None).folder
    towers = [
        StableVideoDiffusionPipeline.from_pretrained(f).image_encoder.state_dict() for f in (shipped, runs[0].folder)
    ]
    # the shipped configuration keeps the random tower it starts from; the variants train it
    moved = [name for name, value in towers[0].items() if not torch.equal(value, towers[1][name])]
    assert "visual_projection.weight" in moved


def test_a_colour_finish_splits_the_unet_steps_and_an_unknown_variant_is_refused():
    config = TrainConfig.variant("colour_finish")
    assert 0 < config.colour_swap_steps < config.unet_steps and config.colour_swap > 0
    assert TrainConfig.short(4, variant="colour_finish").colour_swap_steps == 2
    assert TrainConfig.short(4).colour_swap_steps == 0
    with pytest.raises(ValueError, match="colour_finish"):
        TrainConfig.variant("nope")
