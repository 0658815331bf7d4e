"""The embedding geodesic on a synthetic curved manifold with a known answer: a half circle in 64
dimensions whose centre is off the origin, so that neither the straight line nor slerp follows it."""

import math

import pytest
import torch

from steering.conditioning import interpolate_frames
from steering.interpolate import MIN_CORPUS, KnnPenalty, lerp, slerp

D, RADIUS = 64, 1.0


@pytest.fixture(scope="module")
def arc() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(corpus of 200 points on the arc with a little noise, its ends a and b)."""
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(D, 3, generator=generator))
    u, v, w = basis.T
    centre = 3.0 * w + 1.0 * u
    theta = torch.linspace(0, math.pi, 200)
    on_arc = centre + RADIUS * (torch.cos(theta)[:, None] * u + torch.sin(theta)[:, None] * v)
    corpus = on_arc + 0.01 * torch.randn(200, D, generator=generator)
    return corpus, centre + RADIUS * u, centre - RADIUS * u


def distance_to(corpus: torch.Tensor, point: torch.Tensor) -> float:
    return float(torch.cdist(point[None].double(), corpus.double()).min())


def test_the_geodesic_midpoint_stays_on_the_manifold_where_lerp_and_slerp_cut_across(arc):
    corpus, a, b = arc
    frames, report = interpolate_frames(torch.stack([a, b]), [0.0, 1.0], 9, "geodesic", KnnPenalty.fit(corpus))
    middle = frames[4]  # t = 0.5
    # The straight line's midpoint is the circle's centre, a radius away; slerp's is no better.
    assert distance_to(corpus, lerp(a, b, 0.5)) > 0.9 * RADIUS
    assert distance_to(corpus, slerp(a, b, 0.5)) > 0.9 * RADIUS
    assert distance_to(corpus, middle) < 0.1 * RADIUS
    # Every frame of the path is near the arc, and the energies are of one functional.
    assert max(distance_to(corpus, f) for f in frames) < 0.1 * RADIUS
    assert report["energy"] < report["slerp_energy"] and report["energy"] < report["lerp_energy"]


def test_a_penalty_is_refused_a_small_or_broken_corpus():
    with pytest.raises(ValueError, match=f"at least {MIN_CORPUS} points"):
        KnnPenalty.fit(torch.randn(MIN_CORPUS - 1, 4))
    with pytest.raises(ValueError, match="finite"):
        KnnPenalty.fit(torch.full((MIN_CORPUS, 4), float("nan")))
    with pytest.raises(ValueError, match="coincide"):
        KnnPenalty.fit(torch.ones(MIN_CORPUS, 4))


def test_the_penalty_is_scale_free(arc):
    corpus, a, b = arc
    point = lerp(a, b, 0.5)[None]
    assert float(KnnPenalty.fit(corpus)(point)) == pytest.approx(float(KnnPenalty.fit(10 * corpus)(10 * point)))
