"""Leakage matrix and the disentanglement figure."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.directions import normalize
from steering.leakage import disentanglement, leakage_matrix, linear_scorer, linear_scorers

seeds = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, k=st.integers(min_value=1, max_value=6), step=st.sampled_from([0.5, 1.0, -2.0]))
def test_orthogonal_directions_with_linear_scorers_do_not_leak(seed: int, k: int, step: float) -> None:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(32, k, generator=g, dtype=torch.float64))
    directions = q.T.contiguous()
    x = torch.randn(50, 32, generator=g, dtype=torch.float64)
    matrix = leakage_matrix(directions, linear_scorers(directions), x, step=step)
    torch.testing.assert_close(matrix, torch.eye(k, dtype=torch.float64), atol=1e-9, rtol=0)
    assert disentanglement(matrix) == pytest.approx(1.0, abs=1e-9)


def test_nearly_identical_directions_leak() -> None:
    g = torch.Generator().manual_seed(0)
    d0 = normalize(torch.randn(32, generator=g))
    d1 = normalize(d0 + 0.01 * torch.randn(32, generator=g))
    directions = torch.stack([d0, d1])
    x = torch.randn(40, 32, generator=g)
    matrix = leakage_matrix(directions, linear_scorers(directions), x)
    # for linear scorers L_ij = (d_i·d_j)/(d_i·d_i) = cos(d_i, d_j) for unit directions
    cos = float(d0 @ d1)
    torch.testing.assert_close(matrix, torch.tensor([[1.0, cos], [cos, 1.0]], dtype=torch.float64), atol=1e-5, rtol=0)
    assert cos > 0.99
    assert disentanglement(matrix) < 0.02


def test_leakage_with_a_nonlinear_scorer() -> None:
    # score 1 saturates: tanh(x·e1) changes by less than the linear score 0 when moving along e0 + e1
    e = torch.eye(4, dtype=torch.float64)
    directions = torch.stack([e[0], (e[0] + e[1]) / 2**0.5])
    scorers = [linear_scorer(e[0]), lambda x: torch.tanh(x @ e[1])]
    x = torch.zeros(3, 4, dtype=torch.float64)
    matrix = leakage_matrix(directions, scorers, x, step=1.0)
    expected_01 = 0.0  # moving along e0 does not touch x·e1
    expected_10 = (1 / 2**0.5) / math.tanh(1 / 2**0.5)
    torch.testing.assert_close(
        matrix, torch.tensor([[1.0, expected_01], [expected_10, 1.0]], dtype=torch.float64), atol=1e-12, rtol=0
    )


def test_disentanglement_formula() -> None:
    matrix = torch.tensor([[1.0, 0.5, -0.1], [0.2, 1.0, 0.0], [-1.5, 0.0, 1.0]])
    # rows: 1 − 0.5, 1 − 0.2, clip(1 − 1.5) = 0
    assert disentanglement(matrix) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert disentanglement(torch.ones(1, 1)) == 1.0


def test_edits_that_do_not_move_their_own_score_raise() -> None:
    e = torch.eye(3)
    with pytest.raises(ValueError, match="direction 1"):
        leakage_matrix(e[:2], [linear_scorer(e[0]), linear_scorer(e[2])], torch.zeros(5, 3))
    with pytest.raises(ValueError, match="one scorer per direction"):
        leakage_matrix(e[:2], [linear_scorer(e[0])], torch.zeros(5, 3))
