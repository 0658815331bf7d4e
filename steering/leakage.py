"""Leakage between semantic directions: how much editing one attribute moves the others.

Given K directions and K attribute scorers (trained predictors, or the linear scores ``X @ d``), the
leakage matrix measures the mean change of every score when the examples are moved along each
direction; a single disentanglement figure, in the spirit of MIG (Chen et al. 2018) and SAP (Kumar
et al. 2018), summarises how far each edit stays on its own attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LinearScorer", "Scorer", "disentanglement", "leakage_matrix", "linear_scorer", "linear_scorers"]

Scorer = Callable[[Tensor], Tensor]
"""Maps examples ``(N, D)`` to one attribute score per example ``(N,)``."""


@dataclass(frozen=True, eq=False)
class LinearScorer:
    """``score(X) = X @ d``: ``(N, D) -> (N,)`` in X's dtype, d ``(D,)`` as given."""

    direction: Tensor

    def __call__(self, X: Tensor) -> Tensor:
        score: Tensor = X @ self.direction.to(device=X.device, dtype=X.dtype)
        return score


def linear_scorer(d: Tensor) -> LinearScorer:
    """A scorer reading the coordinate of X along ``d`` ``(D,)``."""
    if d.dim() != 1 or not d.is_floating_point():
        raise ValueError(f"`d` must be a floating (D,) tensor, got {d.dtype} {tuple(d.shape)}")
    return LinearScorer(direction=d.detach().clone())


def linear_scorers(directions: Tensor) -> list[LinearScorer]:
    """One :class:`LinearScorer` per row of ``directions`` ``(K, D)``."""
    if directions.dim() != 2:
        raise ValueError(f"`directions` must be (K, D), got shape {tuple(directions.shape)}")
    return [linear_scorer(d) for d in directions]


def leakage_matrix(directions: Tensor, scorers: Sequence[Scorer], X: Tensor, step: float = 1.0) -> Tensor:
    """Normalised mean score changes under each edit.

    With Δ_ij = mean_n [score_j(x_n + step·d_i) − score_j(x_n)], the entry is ``L_ij = Δ_ij / Δ_ii``: the
    change of attribute j per unit change of attribute i when editing along d_i. The diagonal is 1 and
    a perfectly disentangled set is the identity. Scores should be on comparable scales (e.g. linear
    scores along unit directions, or standardised predictor outputs), since L_ij mixes the units of
    scores i and j.

    Args:
        directions: ``(K, D)`` edit directions d_i, used as given (not renormalised).
        scorers: K callables ``(N, D) -> (N,)``; scorer i belongs to direction i.
        X: ``(N, D)`` examples the edits start from (the change is averaged over them).
        step: edit length α in ``x + α·d_i``, nonzero.

    Returns:
        ``(K, K)`` float64. Raises when an edit does not change its own score (Δ_ii == 0).
    """
    if directions.dim() != 2 or X.dim() != 2 or directions.shape[1] != X.shape[1]:
        raise ValueError(
            f"`directions` (K, D) and `X` (N, D) must share D, got {tuple(directions.shape)} and {tuple(X.shape)}"
        )
    k = directions.shape[0]
    if len(scorers) != k:
        raise ValueError(f"need one scorer per direction: {k} directions, {len(scorers)} scorers")
    if not (math.isfinite(step) and step != 0.0):
        raise ValueError(f"`step` must be finite and nonzero, got {step}")
    x = X.detach()
    base = [_scores(s, x, j) for j, s in enumerate(scorers)]
    changes = torch.empty((k, k), dtype=torch.float64)
    for i in range(k):
        moved = x + step * directions[i].detach().to(device=x.device, dtype=x.dtype)
        for j, scorer in enumerate(scorers):
            changes[i, j] = (_scores(scorer, moved, j) - base[j]).mean()
    diagonal = changes.diagonal()
    scale = max(1.0, float(changes.abs().max()))
    for i in range(k):
        if not math.isfinite(float(diagonal[i])) or abs(float(diagonal[i])) <= 1e-12 * scale:
            raise ValueError(
                f"editing along direction {i} does not change score {i} (mean change {float(diagonal[i])})"
            )
    return changes / diagonal[:, None]


def _scores(scorer: Scorer, x: Tensor, j: int) -> Tensor:
    out = scorer(x)
    if out.shape != (x.shape[0],):
        raise ValueError(f"scorer {j} must map (N, D) to (N,), got output shape {tuple(out.shape)}")
    return out.detach().to(device="cpu", dtype=torch.float64)


def disentanglement(matrix: Tensor) -> float:
    """One figure in [0, 1] for a leakage matrix L ``(K, K)``; 1 means every edit moves only its own score.

    ``score = mean_i clip((|L_ii| − max_{j≠i} |L_ij|) / |L_ii|, 0, 1)``: for each edit, the margin by which
    its own attribute's change exceeds the largest change it causes elsewhere, relative to its own
    (a gap, like SAP's, read along rows). With K = 1 the figure is 1.
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"`matrix` must be square (K, K) with K >= 1, got shape {tuple(matrix.shape)}")
    m = matrix.detach().to(torch.float64).abs()
    k = m.shape[0]
    if k == 1:
        return 1.0
    diag = m.diagonal()
    if not bool((diag > 0).all()):
        raise ValueError("`matrix` must have a nonzero diagonal")
    off = m.masked_fill(torch.eye(k, dtype=torch.bool, device=m.device), float("-inf")).amax(dim=1)
    return float(((diag - off) / diag).clamp(0.0, 1.0).mean())
