"""Path length, step norms and second-difference smoothness."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.interpolate import lerp, slerp
from steering.metrics import path_length, path_smoothness, step_norms

seeds = st.integers(min_value=0, max_value=2**31 - 1)
shapes = st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=3).map(tuple)


def _pair(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, k=st.integers(min_value=3, max_value=12))
def test_straight_equally_spaced_path(seed: int, shape: tuple[int, ...], k: int) -> None:
    a, b = _pair(seed, shape)
    points = lerp(a, b, torch.linspace(0, 1, k, dtype=torch.float64))
    distance = float((b - a).norm())
    assert float(path_length(points)) == pytest.approx(distance, rel=1e-9)
    torch.testing.assert_close(step_norms(points), torch.full((k - 1,), distance / (k - 1), dtype=torch.float64))
    assert float(path_smoothness(points)) == pytest.approx(0.0, abs=1e-20 + 1e-18 * distance**2)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, k=st.integers(min_value=2, max_value=12))
def test_any_path_is_at_least_as_long_as_its_chord(seed: int, shape: tuple[int, ...], k: int) -> None:
    g = torch.Generator().manual_seed(seed)
    points = torch.randn((k, *shape), generator=g, dtype=torch.float64)
    chord = float((points[-1] - points[0]).norm())
    assert float(path_length(points)) >= chord - 1e-9
    assert float(path_length(points)) == pytest.approx(float(step_norms(points).sum()), rel=1e-12)


def test_bent_and_uneven_paths_are_less_smooth() -> None:
    straight = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    bent = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    uneven = torch.tensor([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0]])
    assert float(path_smoothness(straight)) == 0.0
    assert float(path_smoothness(bent)) == pytest.approx(4.0)  # second difference (0, -2)
    assert float(path_smoothness(uneven)) == pytest.approx(1.0)  # second difference (1, 0)
    assert float(path_length(bent)) == pytest.approx(2.0 * math.sqrt(2.0))


def test_slerp_path_on_the_unit_circle() -> None:
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0], dtype=torch.float64)
    points = slerp(a, b, torch.linspace(0, 1, 101, dtype=torch.float64))
    assert float(path_length(points)) == pytest.approx(math.pi / 2, rel=1e-4)


def test_short_paths_and_dtype() -> None:
    one = torch.ones(1, 3, dtype=torch.float16)
    assert float(path_length(one)) == 0.0
    assert step_norms(one).shape == (0,)
    assert float(path_smoothness(one[:1])) == 0.0
    two = torch.randn(2, 3).to(torch.bfloat16)
    assert path_length(two).dtype == torch.bfloat16
    assert path_smoothness(two).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="points"):
        path_length(torch.zeros(0, 3))
