"""Normalisation, Gram–Schmidt, conditional projection and the linear edit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.directions import DependentDirectionError, apply_direction, gram_schmidt, normalize, project_out

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _randn(seed: int, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def test_normalize_rows_and_dtype() -> None:
    d = torch.tensor([[3.0, 4.0], [0.0, -2.0]], dtype=torch.float16)
    out = normalize(d)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, -1.0]], dtype=torch.float16))
    with pytest.raises(ValueError, match="zero"):
        normalize(torch.zeros(2, 3))


@settings(max_examples=40, deadline=None)
@given(seed=seeds, k=st.integers(min_value=1, max_value=8), extra=st.integers(min_value=0, max_value=24))
def test_gram_schmidt_is_orthonormal_and_spans_the_same_space(seed: int, k: int, extra: int) -> None:
    d = k + extra
    ds = _randn(seed, k, d) * torch.logspace(-3, 3, k, dtype=torch.float64)[:, None]
    q = gram_schmidt(ds)
    assert q.shape == (k, d)
    torch.testing.assert_close(q @ q.T, torch.eye(k, dtype=torch.float64), atol=1e-10, rtol=0)
    # every input row is reproduced by its projection on the basis (same span)
    torch.testing.assert_close((ds @ q.T) @ q, ds, atol=1e-8 * float(ds.abs().max()), rtol=1e-8)
    # the first row keeps its orientation
    torch.testing.assert_close(q[0], ds[0] / ds[0].norm(), atol=1e-12, rtol=0)
    # and each later row only uses the earlier ones: ds[i] has no component on q[j] for j > i
    coefficients = ds @ q.T
    assert float(coefficients.triu(1).abs().max()) <= 1e-8 * float(ds.abs().max())


def test_gram_schmidt_stays_orthonormal_for_nearly_parallel_directions() -> None:
    # rows 1e-5 rad apart: one projection pass leaves an overlap of ~ machine eps / 1e-5 ≈ 1e-11, which
    # the second pass removes
    base = _randn(0, 256)
    ds = torch.stack([base + 1e-5 * float(base.norm()) * _randn(k + 1, 256) / 16 for k in range(4)])
    q = gram_schmidt(ds)
    torch.testing.assert_close(q @ q.T, torch.eye(4, dtype=torch.float64), atol=1e-14, rtol=0)


def test_gram_schmidt_dependent_rows_raise_or_are_dropped() -> None:
    a, b = _randn(0, 2, 16)
    ds = torch.stack([a, b, 2 * a - 3 * b, _randn(1, 16)])
    with pytest.raises(DependentDirectionError, match="direction 2"):
        gram_schmidt(ds)
    q = gram_schmidt(ds, drop_dependent=True)
    assert q.shape == (3, 16)
    torch.testing.assert_close(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    seed=seeds,
    m=st.integers(min_value=1, max_value=4),
    alpha=st.floats(min_value=-5.0, max_value=5.0).filter(lambda x: abs(x) > 0.1),
)
def test_project_out_then_apply_leaves_preserved_scores_unchanged(seed: int, m: int, alpha: float) -> None:
    dim = 64
    edit = _randn(seed, dim, dtype=torch.float32)
    # preserved directions deliberately correlated with the edit direction, and one repeated
    preserve = 0.7 * edit + _randn(seed + 1, m, dim, dtype=torch.float32)
    preserve = torch.cat([preserve, preserve[:1]])
    z = _randn(seed + 2, 10, dim, dtype=torch.float32)
    d = project_out(edit, preserve)
    assert abs(float(d.norm()) - 1.0) < 1e-5
    moved = apply_direction(z, d, alpha)
    for p in preserve:
        # linear score along a preserved direction: unchanged up to float32 rounding of z + α·d
        assert float((moved @ p - z @ p).abs().max()) <= 1e-4 * float(p.norm())
    # while the edited score moves: d keeps a positive share of the edit direction
    change = (moved @ edit - z @ edit).mean()
    assert float(change) == pytest.approx(alpha * float(d @ edit), rel=1e-4)
    assert float(d @ edit) > 0.05 * float(edit.norm())
    # without projection the preserved scores would have moved
    unconditioned = apply_direction(z, normalize(edit), alpha)
    assert float((unconditioned @ preserve[0] - z @ preserve[0]).abs().max()) > 1e-2


def test_project_out_of_a_direction_inside_the_span_raises() -> None:
    preserve = _randn(0, 2, 8)
    with pytest.raises(DependentDirectionError):
        project_out(preserve[0] + 2 * preserve[1], preserve)
    # an empty preserve set just normalises
    d = _randn(1, 8)
    torch.testing.assert_close(project_out(d, torch.zeros(0, 8, dtype=torch.float64)), d / d.norm())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_zero_alpha_is_exactly_a_no_op(dtype: torch.dtype) -> None:
    z = _randn(0, 5, 16, dtype=dtype)
    d = normalize(_randn(1, 16, dtype=torch.float32))
    assert torch.equal(apply_direction(z, d, 0.0), z)
    assert apply_direction(z, d, 0.5).dtype == dtype
    alpha = torch.tensor([0.0, 1.0, 0.0, -2.0, 0.5])
    out = apply_direction(z, d, alpha)
    for f in range(5):
        if float(alpha[f]) == 0.0:
            assert torch.equal(out[f], z[f])
        else:
            expected = (z[f].double() + float(alpha[f]) * d.double()).to(dtype)
            torch.testing.assert_close(out[f], expected)
            assert not torch.equal(out[f], z[f])


def test_apply_direction_shapes() -> None:
    z = _randn(0, 2, 5, 8)
    d = _randn(1, 8)
    assert apply_direction(z, d, torch.ones(5)).shape == (2, 5, 8)
    assert apply_direction(z, d, torch.ones(2, 1)).shape == (2, 5, 8)
    with pytest.raises(ValueError, match="alpha"):
        apply_direction(z, d, torch.ones(3))
    with pytest.raises(ValueError, match="alpha"):
        apply_direction(z, d, torch.ones(4, 2, 5))
    with pytest.raises(ValueError, match="`d`"):
        apply_direction(z, d[:4], 1.0)


def test_apply_direction_takes_one_direction_per_point() -> None:
    z, ds = _randn(0, 5, 8), _randn(1, 5, 8)
    alpha = torch.tensor([0.0, 1.0, -2.0, 0.5, 3.0])
    out = apply_direction(z, ds, alpha)
    torch.testing.assert_close(out, z + alpha[:, None] * ds)
    assert torch.equal(out[0], z[0])
    # each point moves along its own row: the same as one call per point
    for f in range(5):
        torch.testing.assert_close(out[f], apply_direction(z[f], ds[f], float(alpha[f])))
    with pytest.raises(ValueError, match="`d`"):
        apply_direction(z, ds[:3], alpha)  # 3 directions for 5 points
    with pytest.raises(ValueError, match="`d`"):
        apply_direction(z[0], ds, 1.0)  # would enlarge z


def test_inputs_are_not_modified() -> None:
    z, d, p = _randn(0, 4, 8), _randn(1, 8), _randn(2, 3, 8)
    copies = [x.clone() for x in (z, d, p)]
    apply_direction(z, project_out(d, p), torch.arange(4.0))
    gram_schmidt(p)
    normalize(d)
    for x, c in zip((z, d, p), copies, strict=True):
        assert torch.equal(x, c)
