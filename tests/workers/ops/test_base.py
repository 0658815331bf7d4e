"""The operations seam: the registry's order, a plain job with no operation, step actions in order."""

import torch

from workers.ops import OPERATIONS, LatentSteering
from workers.ops.base import Operation


def test_the_registry_lists_every_operation_once_in_order():
    names = [op.name for op in OPERATIONS]
    assert names == [
        "sweep",
        "variation",
        "keyframes",
        "directions",
        "references",
        "negative_image",
        "style",
        "interpolation",
        "video",
    ]
    assert all(issubclass(op, Operation) for op in OPERATIONS)


def test_a_job_without_steering_uses_no_operation(planned):
    job = planned()
    assert job.operations == []
    (clip,) = job.clips
    conditioning, _, steering = job.stack(job.clips)
    assert not steering
    assert conditioning.token_bias is None and conditioning.tokens.shape == (1, 5, 1, 32)
    # SVD's own unconditional branch: zeros in both spaces.
    assert not conditioning.negative_tokens.any() and not conditioning.negative_image_latents.any()
    # The image held over every frame, in both spaces.
    assert torch.equal(conditioning.tokens[0, :, 0], conditioning.tokens[0, :1, 0].expand(5, -1))
    assert torch.equal(conditioning.image_latents[0], conditioning.image_latents[0, :1].expand(5, -1, -1, -1))
    assert torch.equal(clip.noise, job.ctx.base_noise.latents)


def test_step_actions_run_in_the_order_given():
    seen: list[str] = []

    def action(name: str, shift: float):
        def act(pipe, step, latents):
            seen.append(name)
            return latents * 2 + shift

        return act

    steering = LatentSteering([action("first", 1.0), action("second", 0.0)])
    assert steering and not LatentSteering()
    out = steering(None, 0, torch.zeros(1))
    assert seen == ["first", "second"] and out.item() == 2.0  # (0 * 2 + 1) * 2 + 0
