"""Training the toy model is deterministic for a seed, and what it saves loads as a pipeline."""

import pytest
import torch
from diffusers import StableVideoDiffusionPipeline

from workers.models import ModelRegistry, weight_hash
from workers.settings import engine_defaults
from workers.toy import TOY_FOLDER, toy_available
from workers.toy.train import TrainConfig, build_toy_pipeline, make_framewise, temporal_wobble, train_toy


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


@pytest.mark.parametrize("variant", ["colour_tokens", "colour_finish", "framewise_colour", "temporal_decoder"])
def test_the_variants_are_deterministic_too(tmp_path, variant):
    config = TrainConfig.short(4, variant=variant)
    runs = [train_toy(tmp_path / name, config, log=lambda line: None) for name in ("a", "b")]
    assert weight_hash(runs[0].folder) == weight_hash(runs[1].folder)
    assert len(runs[0].losses["unet"]) == config.unet_steps  # a colour-swapping phase, if any, is among them
    untrained = build_toy_pipeline(config.seed).image_encoder.state_dict()
    tower = StableVideoDiffusionPipeline.from_pretrained(runs[0].folder).image_encoder.state_dict()
    # the configurations without stage 2 keep the random tower they start from; the others train it
    moved = [name for name, value in untrained.items() if not torch.equal(value.half(), tower[name])]
    assert ("visual_projection.weight" in moved) == (config.encoder_steps > 0)


def test_a_colour_finish_splits_the_unet_steps_and_an_unknown_variant_is_refused():
    config = TrainConfig.variant("colour_finish")
    assert 0 < config.colour_swap_steps < config.unet_steps and config.colour_swap > 0
    assert TrainConfig.short(4, variant="colour_finish").colour_swap_steps == 2
    assert TrainConfig.short(4).colour_swap_steps == 0 and TrainConfig.short(4).decoder_framewise
    assert not TrainConfig.short(4, variant="temporal_decoder").framewise_from_start
    assert TrainConfig.short(4, variant="framewise_colour").colour_swap_steps == 2
    with pytest.raises(ValueError, match="colour_finish"):
        TrainConfig.variant("nope")


def decode_alone_and_together(decode, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (F, C, h, w) decoded as one chunk of F frames, and one frame at a time."""
    together = decode(latents, num_frames=len(latents)).sample
    alone = torch.cat([decode(latents[i : i + 1], num_frames=1).sample for i in range(len(latents))])
    return together, alone


@torch.no_grad()
def test_a_framewise_decoder_gives_each_frame_the_same_picture_in_any_chunk():
    vae = build_toy_pipeline(0).vae.eval()
    for block in vae.decoder.modules():  # temporal branches that do something, as after training
        if hasattr(block, "temporal_res_block"):
            torch.nn.init.normal_(block.temporal_res_block.conv2.weight, std=0.05)
    latents = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    together, alone = decode_alone_and_together(vae.decode, latents)
    assert (together - alone).abs().max() > 1e-2  # a temporal decoder mixes neighbouring frames
    make_framewise(vae.decoder)
    together, alone = decode_alone_and_together(vae.decode, latents)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    trainable = [name for name, p in vae.decoder.named_parameters() if p.requires_grad]
    assert trainable and not any("temporal" in name or "time_" in name for name in trainable)


def test_the_temporal_wobble_is_zero_for_a_steady_error_and_finds_a_frame_off_its_neighbours():
    steady = torch.linspace(0, 1, 8)[None, :, None, None, None].expand(2, 8, 4, 8, 8)  # drifting evenly
    assert temporal_wobble(steady).abs().max() < 1e-6
    bright = torch.zeros(2, 8, 4, 8, 8)
    bright[:, 4] = 1.0  # frame 4 brighter than both neighbours
    wobble = temporal_wobble(bright)
    assert wobble.shape == (2, 6, 4, 4, 4)
    assert wobble[:, 2:5].abs().min() == 1.0 and wobble[:, [0, 1, 5]].abs().max() == 0.0


@pytest.mark.skipif(not toy_available(), reason="the toy model's weights are not in models/toy")
@torch.no_grad()
def test_the_shipped_toy_decoder_is_framewise():
    from diffusers import AutoencoderKLTemporalDecoder

    vae = AutoencoderKLTemporalDecoder.from_pretrained(TOY_FOLDER / "vae", torch_dtype=torch.float32)
    latents = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    together, alone = decode_alone_and_together(vae.decode, latents)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-4)
