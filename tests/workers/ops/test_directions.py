"""`directions`: z' = z + α·d on the positive image token per frame, or on the latents per step."""

import pytest
import torch

from tests.workers.conftest import EMBED_DIM, LATENT
from workers.directions import direction_digest
from workers.ops.directions import DirectionsOp, LatentDirections


def unit(n: int, seed: int) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_an_embedding_direction_moves_each_frame_by_its_strength(planned):
    d = unit(EMBED_DIM, 1)
    ramp = {"from": 0.0, "to": 2.0, "over": "frames"}
    job = planned(directions=[{"source": {"vector": (d * 3).tolist()}, "strength": ramp}])
    plain = planned()
    moved = job.stack(job.clips)[0].tokens[0, :, 0]
    before = plain.stack(plain.clips)[0].tokens[0, :, 0]
    shift = (moved - before) @ d  # unit length: a 3·d source moves by the strength, not 3x
    assert torch.allclose(shift, torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0]), atol=1e-5)
    assert torch.allclose(moved - before, shift[:, None] * d, atol=1e-5)
    # Nothing on the latents.
    assert not job.stack(job.clips)[2]


def test_a_latent_direction_adds_its_share_at_each_step_of_its_window(planned):
    vector = torch.ones(LATENT[0])
    job = planned(
        directions=[{"source": {"vector": vector.tolist()}, "space": "latent", "strength": 4.0, "steps": [0.5, 1.0]}]
    )
    (op,) = job.operations
    assert isinstance(op, DirectionsOp)
    _, _, steering = job.stack(job.clips)
    (action,) = steering.actions
    assert isinstance(action, LatentDirections)
    latents = torch.zeros(1, 5, *LATENT)
    assert torch.equal(action(None, 0, latents), latents)  # before the window: steps 0, 1 of 4
    after = action(None, 2, latents)
    # 4.0 in total over two steps, along (C, 1, 1) scaled to RMS entry 1 = 1 per channel.
    assert torch.allclose(after, torch.full_like(latents, 2.0 * 1.0))
    described = op.describe(job.ctx)["directions"]
    digest = direction_digest(vector)
    assert described == [
        {
            "index": 0,
            "space": "latent",
            "source": "vector",
            "preserve": 0,
            "evaluated": "fixed",
            "sha256": digest,
            "preserve_sha256": [],
        }
    ]


def latent_shift(planned, vector: torch.Tensor, size: int, strength: float = 3.0) -> torch.Tensor:
    """How one latent direction moves zero latents over its whole window, at a size x size job."""
    job = planned(
        generation={"width": size, "height": size, "num_frames": 5, "steps": 4},
        directions=[{"source": {"vector": vector.flatten().tolist()}, "space": "latent", "strength": strength}],
    )
    (action,) = job.stack(job.clips)[2].actions
    latents = torch.zeros(1, 5, 4, size // 8, size // 8)
    for step in range(4):
        latents = action(None, step, latents)
    return latents


def test_a_latent_strength_means_the_same_per_element_move_at_every_resolution(planned):
    pattern = torch.tensor([1.0, -2.0, 0.5, 3.0])  # per channel
    rms = float(pattern.square().mean().sqrt())
    want = 3.0 * pattern / rms  # the strength in the latents' own units, per element
    for size in (64, 128):
        h = size // 8
        per_channel = latent_shift(planned, pattern, size)
        written_out = latent_shift(planned, pattern[:, None, None].expand(4, h, h), size)
        expected = want[None, None, :, None, None].expand_as(per_channel)
        assert torch.allclose(per_channel, expected, atol=1e-5), size
        # the same pattern given at full size moves the latents exactly as much as its channel form
        assert torch.allclose(written_out, expected, atol=1e-5), size
        # a full-size direction of any shape: RMS move = strength, at 8x8 and at 16x16 latents alike
        texture = torch.randn(4, h, h, generator=torch.Generator().manual_seed(size))
        moved = latent_shift(planned, texture, size)
        assert float(moved[0, 0].square().mean().sqrt()) == pytest.approx(3.0, rel=1e-5)


def test_a_batch_stacks_each_clips_strength(planned):
    direction = {"source": {"vector": [1.0, 0.0, 0.0, 0.0]}, "space": "latent", "strength": 0.0}
    job = planned(directions=[direction], sweep={"target": "direction", "to": 2.0, "count": 3})
    (action,) = job.stack(job.clips)[2].actions
    (edit,) = action.edits
    assert edit.alpha.shape == (3, 4, 5)
    assert torch.allclose(edit.alpha[:, 0, 0] * 4, torch.tensor([0.0, 1.0, 2.0]))
