"""Training the toy model is deterministic for a seed, and what it saves loads as a pipeline."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline

from workers.models import ModelRegistry, weight_hash
from workers.settings import engine_defaults
from workers.toy import TOY_FOLDER, toy_available
from workers.toy.data import render
from workers.toy.train import (
    TrainConfig,
    _unet_phase,
    build_toy_pipeline,
    encode_pool,
    encode_reference_pool,
    make_framewise,
    reference_example,
    reference_target,
    temporal_wobble,
    train_toy,
    vae_batch,
)


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


@pytest.mark.parametrize(
    "variant", ["colour_tokens", "colour_finish", "framewise_colour", "temporal_decoder", "references"]
)
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
    references = TrainConfig.short(4, variant="references")
    assert (references.reference_steps, references.reference_pool, references.vae_tint) == (2, 4, 0.5)
    assert TrainConfig.short(4).reference_steps == 0 and TrainConfig.variant("references").reference_steps == 1500
    with pytest.raises(ValueError, match="colour_finish"):
        TrainConfig.variant("nope")


def test_a_reference_target_starts_on_the_conditioning_frame_and_reaches_the_mix_by_the_ramps_end():
    config = replace(TrainConfig(), reference_ramp=2)
    target, anchor, _ = reference_example(config, 3)
    frames = reference_target(target, config)
    plain, mixed = render(replace(target, tint=None)), render(target)
    assert frames.shape == plain.shape
    assert np.array_equal(frames[0], plain[0])  # frame 0 is the conditioning frame
    assert np.array_equal(frames[config.reference_ramp :], mixed[config.reference_ramp :])
    between = render(replace(target, tint=(anchor.colour, target.tint[1] / config.reference_ramp)))
    assert np.array_equal(frames[1], between[1])
    assert np.array_equal(reference_target(target, TrainConfig()), mixed)  # no ramp: every frame mixed


def test_vae_batches_tint_the_share_of_clips_asked_for_and_none_without():
    plain = vae_batch(11, 40, 1, 64)
    assert torch.equal(plain, vae_batch(11, 40, 1, 64, tint=0.0))
    tinted = vae_batch(11, 40, 1, 64, tint=0.5)
    changed = sum(not torch.equal(a, b) for a, b in zip(plain, tinted, strict=True))
    assert 10 <= changed <= 30  # about half of 40, each a clip whose shape took another colour
    assert torch.equal(tinted, vae_batch(11, 40, 1, 64, tint=0.5))


def test_a_reference_example_mixes_the_clips_colour_toward_the_references_by_its_attention_share():
    config = TrainConfig()
    low, high = config.reference_weights
    for n in range(40):
        target, anchor, weight = reference_example(config, n)
        assert (target, anchor, weight) == reference_example(config, n)
        assert anchor.colour != target.colour and anchor.num_frames == 1
        assert low <= weight <= high
        assert target.tint == (anchor.colour, pytest.approx(weight / (1 + weight)))
    assert reference_example(config, 0) != reference_example(config, 1)


class GradientProbe:
    """A stepper that only backpropagates, and keeps the cross-attention keys' gradient norm."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.steps, self.unet, self.norms, self.losses = 1, unet, [], []

    def __call__(self, step: int, loss: torch.Tensor) -> None:
        self.unet.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for name, p in self.unet.named_parameters() if "attn2.to_k" in name]
        self.norms.append(float(torch.cat([g.flatten() for g in grads]).norm()))


def test_a_reference_token_in_training_reaches_the_attention_weights():
    """With the one image token every query's softmax weight is 1, so cross-attention's keys get no
    gradient; with a reference token beside it, weighted through the pipeline's processors, they do."""
    config = replace(TrainConfig.short(4), reference_pool=4, reference_steps=2, reference_share=1.0, unet_batch=2)
    pipe = build_toy_pipeline(config.seed)
    pool, references = encode_pool(pipe, config, print), encode_reference_pool(pipe, config, print)
    norms = {}
    for name, refs in (("alone", None), ("with references", references)):
        probe = GradientProbe(pipe.unet)
        _unet_phase(pipe.unet, pipe.vae, pool, config, probe, torch.Generator().manual_seed(0), 0.0, refs)
        norms[name] = probe.norms[0]
    assert norms["alone"] < 1e-4 * norms["with references"], norms
    # the phase leaves the UNet's processors as it found them
    assert all(type(p).__name__ == "AttnProcessor2_0" for p in pipe.unet.attn_processors.values())


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
