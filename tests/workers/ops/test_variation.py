"""`variation`: the initial noise slerped toward a second seed's."""

import torch

from workers.ops.variation import VariationOp


def test_strength_zero_is_the_job_noise_and_one_the_other_seed(planned):
    none = planned(variation={"seed": 7, "strength": 0.0})
    (clip,) = none.clips
    assert torch.equal(clip.noise, none.ctx.base_noise.latents)
    full = planned(variation={"seed": 7, "strength": 1.0})
    assert torch.equal(full.clips[0].noise, full.ctx.draw_latents(7))


def test_halfway_keeps_the_gaussian_norm(planned):
    job = planned(variation={"seed": 7, "strength": 0.5})
    a, b, mid = job.ctx.base_noise.latents, job.ctx.draw_latents(7), job.clips[0].noise
    assert not torch.allclose(mid, a) and not torch.allclose(mid, b)
    # slerp's midpoint of two near-orthogonal draws keeps their norm; lerp's would shrink by ~1/√2.
    assert abs(mid.norm() / a.norm() - 1) < 0.05
    (op,) = job.operations
    assert isinstance(op, VariationOp) and op.describe(job.ctx) == {"seed": 7, "strength": 0.5}
