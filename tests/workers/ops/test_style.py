"""`style`: AdaIN of the latents toward the style image's latent statistics inside a step window."""

import pytest
import torch

from steering.adain import channel_stats
from workers.ops.style import StyleEdit, StyleOp


class Scheduler:
    sigmas = torch.tensor([10.0, 5.0, 1.0, 0.0])


class Pipe:
    scheduler = Scheduler()


def test_the_edit_holds_the_style_images_scaled_latent_statistics(planned, image_paths):
    job = planned(style={"image": str(image_paths[3]), "strength": 0.7, "steps": [0.5, 1.0]})
    (op,) = job.operations
    assert isinstance(op, StyleOp)
    ctx, pipe = job.ctx, job.ctx.pipe
    clean = torch.zeros((1, 3, 64, 64))
    latent = pipe.encode_image(ctx.images["style.image"], 64, 64, clean, 0.0).latent
    mean, std = channel_stats(latent[None, None] * pipe.vae.config.scaling_factor)
    assert torch.equal(op.edit.mean, mean[0, 0]) and torch.equal(op.edit.std, std[0, 0])
    assert op.edit.window.tolist() == [False, False, True, True]
    assert job.stack(job.clips)[2].actions == [op.edit]
    assert op.describe(ctx) == {"strength": 0.7, "steps": [0.5, 1.0], "over_frames": False}


@pytest.mark.parametrize(("step", "moves"), [(0, False), (2, True)])
def test_the_edit_acts_inside_its_window_only(step, moves):
    edit = StyleEdit(
        mean=torch.full((4, 1, 1), 3.0),
        std=torch.full((4, 1, 1), 0.5),
        strength=1.0,
        window=torch.tensor([False, False, True]),
    )
    latents = torch.randn(1, 5, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = edit(Pipe(), step, latents)
    assert torch.equal(out, latents) is not moves
    if moves:  # after step 2 sigma is 0: the reference's own statistics
        mean, std = channel_stats(out)
        assert torch.allclose(mean, torch.full_like(mean, 3.0), atol=1e-4)
        assert torch.allclose(std, torch.full_like(std, 0.5), atol=1e-4)


def test_strength_zero_leaves_the_latents():
    edit = StyleEdit(mean=torch.zeros(4, 1, 1), std=torch.ones(4, 1, 1), strength=0.0, window=torch.tensor([True]))
    latents = torch.randn(1, 2, 4, 8, 8)
    assert edit(Pipe(), 0, latents) is latents
