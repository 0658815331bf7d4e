"""MIG, SAP and the attribute leakage matrix on synthetic embeddings with planted, known structure."""

import math

import pytest
import torch

from steering.disentanglement import _mutual_information, attribute_report, mig, sap


def planted(n: int = 600, dim: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings where attribute `a` lives along axis u and attribute `b` along axis v (orthonormal),
    plus isotropic noise elsewhere; returns (X, [u, v], attributes)."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    u, v = basis[:, 0], basis[:, 1]
    a = torch.randint(0, 2, (n,), generator=g).to(torch.float64)  # a binary attribute
    b = torch.randint(-2, 3, (n,), generator=g).to(torch.float64)  # one of five levels, as a size or a hue
    noise = torch.randn(n, dim, generator=g, dtype=torch.float64) * 0.05
    X = 3.0 * a[:, None] * u + b[:, None] * v + noise
    return X, torch.stack([u, v]), {"a": a, "b": b}


def test_a_disentangled_set_scores_high_with_a_diagonal_leakage():
    X, axes, attributes = planted(n=2000)
    report = attribute_report(axes, X, attributes)
    assert report.mig >= 0.9
    # SAP as defined: a binary attribute's score is a balanced accuracy (0.5 for a useless coordinate),
    # so its gap is at most 0.5; the continuous attribute's R² gap is about 1.
    assert report.sap >= 0.7
    leakage = torch.tensor(report.leakage, dtype=torch.float64)
    assert torch.allclose(leakage.abs(), torch.eye(2, dtype=torch.float64), atol=0.05)
    assert min(report.predictor_r2) > 0.95


def test_mig_of_the_planted_codes_is_at_least_0_9():
    X, axes, attributes = planted(n=2000)
    codes = X @ axes.T
    factors = torch.stack([attributes["a"], (attributes["b"] > 0).to(torch.float64)], dim=1)
    assert mig(codes, factors) >= 0.9


def test_an_entangled_set_scores_low_and_its_leakage_is_found():
    X, axes, attributes = planted(n=2000)
    mixed = torch.stack([axes[0] + axes[1], axes[0] - axes[1]]) / math.sqrt(2)  # each moves both attributes
    report = attribute_report(mixed, X, attributes)
    assert report.mig <= 0.3
    assert report.sap <= 0.2
    leakage = torch.tensor(report.leakage).abs()
    assert (leakage > 0.8).all()  # every direction moves every attribute about as much


def test_mutual_information_of_a_variable_with_itself_is_its_entropy():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 3, 3])
    counts = torch.tensor([1, 2, 3, 2], dtype=torch.float64) / 8
    assert _mutual_information(labels, labels) == pytest.approx(float(-(counts * counts.log()).sum()))
    assert _mutual_information(labels, torch.zeros(8, dtype=torch.long)) == pytest.approx(0.0)


def test_sap_needs_two_codes_and_wrong_label_counts_are_refused():
    X, axes, attributes = planted(n=50)
    with pytest.raises(ValueError, match="two directions"):
        sap(X @ axes[:1].T, attributes["a"][:, None])
    with pytest.raises(ValueError, match="one value per image"):
        attribute_report(axes, X, {"a": attributes["a"][:10]})
