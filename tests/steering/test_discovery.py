"""Direction discovery recovers directions planted in synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from steering.directions import normalize
from steering.discovery import (
    contrastive,
    fit_attribute_predictor,
    ica,
    linear_probe,
    pca,
    predictor_direction,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _planted(seed: int, n: int = 500, dim: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Isotropic examples X (n, dim), a unit direction d, and the attribute s = X·d it alone determines."""
    g = _gen(seed)
    d = normalize(torch.randn(dim, generator=g))
    x = torch.randn(n, dim, generator=g)
    return x, d, x @ d


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a.double() @ b.double() / (a.double().norm() * b.double().norm()))


@pytest.mark.parametrize("seed", [0, 1])
def test_pca_finds_the_high_variance_direction(seed: int) -> None:
    g = _gen(seed)
    d = normalize(torch.randn(64, generator=g))
    x = torch.randn(300, 64, generator=g) + 4.0 * torch.randn(300, 1, generator=g) * d + 3.0
    result = pca(x, 5)
    assert result.components.shape == (5, 64) and result.n == 300
    assert abs(_cos(result.components[0], d)) >= 0.95
    torch.testing.assert_close(result.components @ result.components.T, torch.eye(5), atol=1e-5, rtol=0)
    ratio = result.explained_variance_ratio
    assert bool((ratio[:-1] >= ratio[1:]).all()) and float(ratio.sum()) <= 1.0 + 1e-6
    # 16 + 1 of the 16 + 64 units of variance lie along d; the next axes hold about 1 each
    assert float(ratio[0]) == pytest.approx(17 / 80, rel=0.25)
    assert float(ratio[0]) > 5 * float(ratio[1])
    torch.testing.assert_close(result.mean, x.mean(0), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="`k`"):
        pca(x, 65)


def test_ica_unmixes_independent_non_gaussian_sources() -> None:
    g = _gen(3)
    n, dim = 2000, 32
    sources = torch.stack(
        [
            torch.rand(n, generator=g) * 2 - 1,  # uniform (sub-Gaussian)
            # Laplace (super-Gaussian): the difference of two unit exponentials
            torch.log(torch.rand(n, generator=g)) - torch.log(torch.rand(n, generator=g)),
            torch.sign(torch.rand(n, generator=g) - 0.5),  # binary
        ],
        dim=1,
    )
    sources = (sources - sources.mean(0)) / sources.std(0)
    # non-orthogonal unit mixing vectors, so the mixing and unmixing rows differ
    mixing = normalize(torch.randn(3, dim, generator=g) + 0.5 * torch.randn(1, dim, generator=g))
    x = sources @ mixing + 0.05 * torch.randn(n, dim, generator=g)
    result = ica(x, 3, seed=0)
    assert result.converged and result.directions.shape == (3, dim)
    # recovered sources match the planted ones up to order and sign
    recovered = (x - result.mean) @ result.directions.T
    corr = np.corrcoef(recovered.T.numpy(), sources.T.numpy())[:3, 3:]
    rows, cols = linear_sum_assignment(-np.abs(corr))
    assert np.abs(corr[rows, cols]).min() >= 0.9
    # and the mixing vectors (the edit directions) match the planted ones
    cos = np.abs((result.mixing.double() @ mixing.double().T).numpy())
    rows, cols = linear_sum_assignment(-cos)
    assert cos[rows, cols].min() >= 0.9
    # deterministic given the seed
    again = ica(x, 3, seed=0)
    assert torch.equal(again.directions, result.directions)


def test_contrastive_direction_points_from_a_to_b() -> None:
    g = _gen(4)
    d = normalize(torch.randn(128, generator=g))
    x_a = torch.randn(60, 128, generator=g)
    x_b = x_a + 2.0 * d + 0.2 * torch.randn(60, 128, generator=g)
    result = contrastive(x_a, x_b)
    assert _cos(result.direction, d) >= 0.95
    assert result.n_pairs == 60
    assert result.mean_difference_norm == pytest.approx(2.0, rel=0.1)
    assert result.consistency > 0.5
    assert _cos(contrastive(x_b, x_a).direction, d) <= -0.95


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_supervised_predictor_gradient_recovers_the_direction(kind: str) -> None:
    x, d, s = _planted(5)
    y = s + 0.1 * torch.randn(len(s), generator=_gen(6)) if kind == "regression" else (s > 0).float()
    fit = fit_attribute_predictor(x, y, seed=0)
    assert fit.task == kind
    assert fit.validation_score is not None and fit.validation_score > 0.9
    directions = predictor_direction(fit, x[:100])
    assert directions.shape == (100, 32)
    cosines = directions.double() @ d.double()
    assert float(cosines.mean()) >= 0.95
    single = predictor_direction(fit.model, x[0])
    assert single.shape == (32,)
    torch.testing.assert_close(single, directions[0], atol=1e-6, rtol=0)
    # deterministic given the seed
    again = fit_attribute_predictor(x, y, seed=0)
    for key, value in fit.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value)
    assert torch.equal(predictor_direction(again, x[:100]), directions)


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_linear_probe_weight_recovers_the_direction(kind: str) -> None:
    x, d, s = _planted(7)
    y = s + 0.1 * torch.randn(len(s), generator=_gen(8)) if kind == "regression" else (s > 0).float()
    probe = linear_probe(x, y)
    assert probe.task == kind
    assert _cos(probe.direction, d) >= 0.95
    assert abs(float(probe.direction.norm()) - 1.0) < 1e-5
    assert probe.train_score > 0.9


def test_predictor_direction_is_the_normalised_gradient() -> None:
    # score(z) = ‖z‖² has gradient 2z: the direction is z/‖z‖
    z = torch.randn(4, 6, generator=_gen(9))
    out = predictor_direction(lambda v: (v**2).sum(-1), z)
    torch.testing.assert_close(out, z / z.norm(dim=1, keepdim=True))
    # and a score that does not depend on z has no direction
    with pytest.raises(ValueError, match="zero"):
        predictor_direction(lambda v: v.sum(-1) * 0.0, z)


def test_supervised_inputs_are_checked() -> None:
    x, _, s = _planted(0, n=20, dim=4)
    with pytest.raises(ValueError, match="`y`"):
        linear_probe(x, s[:10])
    with pytest.raises(ValueError, match="classification"):
        fit_attribute_predictor(x, s, task="classification")
