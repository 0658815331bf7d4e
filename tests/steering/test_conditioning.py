"""Per-frame conditioning values: keyframe interpolation over frames and weighted reference tokens."""

import math

import pytest
import torch

from steering.conditioning import (
    corpus_penalty,
    frame_positions,
    interpolate_both,
    interpolate_frames,
    reference_tokens,
)
from steering.interpolate import KnnPenalty, slerp


def test_frame_positions_run_from_zero_to_one():
    assert frame_positions(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert frame_positions(5).dtype == torch.float64


def test_linear_keyframes_at_both_ends_give_a_straight_ramp():
    values = torch.tensor([[0.0, 0.0], [4.0, 8.0]])
    out, report = interpolate_frames(values, [0.0, 1.0], 5, "linear")
    assert torch.allclose(out, torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [4.0, 8.0]]))
    assert report == {"method": "linear"}


def test_values_are_held_flat_outside_the_keyframes():
    values = torch.tensor([[1.0], [3.0]])
    out, _ = interpolate_frames(values, [0.25, 0.75], 5, "linear")
    # t = 0, 0.25 | 0.5 | 0.75, 1: held at the first before it, at the last after it.
    assert out.flatten().tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]


def test_three_keyframes_pass_through_each():
    values = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    out, _ = interpolate_frames(values, [0.0, 0.5, 1.0], 5, "slerp")
    assert torch.equal(out[0], values[0]) and torch.equal(out[2], values[1]) and torch.equal(out[4], values[2])
    assert torch.allclose(out[1], slerp(values[0], values[1], 0.5), atol=1e-6)


def test_a_single_position_gives_one_value():
    values = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    out, _ = interpolate_frames(values, [0.0, 1.0], 1, "linear", at=0.25)
    assert out.shape == (1, 2) and torch.allclose(out[0], torch.tensor([0.5, 1.5]))


def test_geodesic_without_a_density_model_says_it_used_slerp():
    values = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    out, report = interpolate_frames(values, [0.0, 1.0], 4, "geodesic", penalty=None)
    slerped, _ = interpolate_frames(values, [0.0, 1.0], 4, "slerp")
    assert torch.equal(out, slerped)
    assert report["method"] == "slerp" and report["interpolation_used"] == "slerp" and "fallback" in report
    assert not {"energy", "slerp_energy", "lerp_energy"} & set(report)  # no gain claimed


def test_geodesic_with_a_corpus_reports_the_three_energies():
    corpus = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    penalty = KnnPenalty.fit(corpus)
    values = corpus[:2]
    out, report = interpolate_frames(values, [0.0, 1.0], 5, "geodesic", penalty=penalty)
    assert torch.equal(out[0], values[0]) and torch.equal(out[-1], values[1])
    assert report["method"] == "geodesic" and report["interpolation_used"] == "geodesic"
    assert report["energy"] <= min(report["slerp_energy"], report["lerp_energy"]) + 1e-9


def test_both_spaces_share_the_positions_and_latents_never_take_the_density():
    embeddings = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    latents = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(4))
    penalty = KnnPenalty.fit(torch.randn(64, 8, generator=torch.Generator().manual_seed(5)))
    e, z, report = interpolate_both(embeddings, latents, [0.0, 1.0], 3, "geodesic", penalty)
    assert e.shape == (3, 8) and z.shape == (3, 4, 2, 2)
    assert report["embedding"]["method"] == "geodesic"
    assert report["image_latent"]["method"] == "slerp"


def test_a_penalty_needs_a_corpus_of_64_points():
    assert corpus_penalty(None) is None
    assert corpus_penalty(torch.randn(63, 4)) is None
    assert isinstance(corpus_penalty(torch.randn(64, 4)), KnnPenalty)


def test_reference_tokens_and_their_log_weights():
    tokens = torch.zeros(3, 1, 4)
    refs = [torch.ones(4), torch.full((4,), 2.0)]
    out, bias = reference_tokens(tokens, refs, [2.0, 0.0])
    assert out.shape == (3, 3, 4) and torch.equal(out[:, 2], torch.full((3, 4), 2.0))
    assert bias is not None and bias.shape == (3, 3)
    assert bias[0].tolist() == [0.0, pytest.approx(math.log(2.0)), -math.inf]
    assert reference_tokens(tokens, [], []) == (tokens, None)
