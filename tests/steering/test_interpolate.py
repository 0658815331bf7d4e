"""Properties of lerp, slerp, the manifold penalties and the geodesic path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from steering.interpolate import GaussianPenalty, Penalty, geodesic, lerp, shell_penalty, slerp

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

seeds = st.integers(min_value=0, max_value=2**31 - 1)
shapes = st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=3).map(tuple)
unit_t = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
dtypes = st.sampled_from(DTYPES)


def _pair(seed: int, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return a, b


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = float(a64 @ b64 / (a64.norm() * b64.norm()))
    return math.acos(max(-1.0, min(1.0, cos)))


# ------------------------------------------------------------------------------------------------ lerp


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, t=st.floats(min_value=-1.0, max_value=2.0, allow_nan=False))
def test_lerp_is_affine_in_t(seed: int, shape: tuple[int, ...], t: float) -> None:
    a, b = _pair(seed, shape, torch.float64)
    expected = a + t * (b - a)
    torch.testing.assert_close(lerp(a, b, t), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, shape=shapes, t=unit_t, scale=st.floats(min_value=-3.0, max_value=3.0))
def test_lerp_is_linear_in_the_endpoints(seed: int, shape: tuple[int, ...], t: float, scale: float) -> None:
    a, b = _pair(seed, shape, torch.float64)
    c, d = _pair(seed + 1, shape, torch.float64)
    combined = lerp(a + scale * c, b + scale * d, t)
    torch.testing.assert_close(combined, lerp(a, b, t) + scale * lerp(c, d, t), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------------ slerp


@settings(max_examples=50, deadline=None)
@given(seed=seeds, shape=shapes, dtype=dtypes)
def test_slerp_and_lerp_endpoints_are_bitwise_exact(seed: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    a, b = _pair(seed, shape, dtype)
    for fn in (slerp, lerp):
        assert torch.equal(fn(a, b, 0.0), a)
        assert torch.equal(fn(a, b, 1.0), b)
        batch = fn(a, b, torch.tensor([0.0, 0.5, 1.0]))
        assert torch.equal(batch[0], a)
        assert torch.equal(batch[2], b)


@settings(max_examples=50, deadline=None)
@given(seed=seeds, dim=st.integers(min_value=2, max_value=64), t=unit_t)
def test_slerp_of_unit_vectors_stays_on_the_unit_sphere(seed: int, dim: int, t: float) -> None:
    a, b = _pair(seed, (dim,), torch.float64)
    a, b = a / a.norm(), b / b.norm()
    assume(_angle(a, b) < math.pi - 1e-3)  # antipodal pairs deliberately fall back to lerp
    out = slerp(a, b, t)
    assert abs(float(out.norm()) - 1.0) < 1e-9
    # and the angle to a grows linearly with t
    assert abs(_angle(a, out) - t * _angle(a, b)) < 1e-6


@settings(max_examples=30, deadline=None)
@given(seed=seeds, shape=shapes, t=unit_t, dtype=dtypes)
def test_slerp_of_a_vector_with_itself_is_that_vector(
    seed: int, shape: tuple[int, ...], t: float, dtype: torch.dtype
) -> None:
    a, _ = _pair(seed, shape, dtype)
    assert torch.equal(slerp(a, a.clone(), t), a)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, t=unit_t, factor=st.sampled_from([-1.0, 0.5, 2.0, 1.0 + 1e-9, 0.0]))
def test_colinear_and_antipodal_endpoints_fall_back_to_lerp(
    seed: int, shape: tuple[int, ...], t: float, factor: float
) -> None:
    a, _ = _pair(seed, shape, torch.float64)
    b = factor * a
    out = slerp(a, b, t)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, lerp(a, b, t), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_and_shape_are_kept(dtype: torch.dtype) -> None:
    a, b = _pair(0, (3, 4, 5), dtype)
    assert slerp(a, b, 0.3).dtype == dtype
    assert slerp(a, b, 0.3).shape == (3, 4, 5)
    assert lerp(a, b, 0.3).dtype == dtype
    assert slerp(a, b, torch.tensor([0.2, 0.7])).shape == (2, 3, 4, 5)
    assert geodesic(a, b, torch.tensor([0.25, 0.5]), penalty=shell_penalty(7.0), iters=3).points.dtype == dtype


@settings(max_examples=30, deadline=None)
@given(seed=seeds, shape=shapes, ts=st.lists(unit_t, min_size=1, max_size=6), dtype=dtypes)
def test_batched_over_t_equals_per_t_calls(
    seed: int, shape: tuple[int, ...], ts: list[float], dtype: torch.dtype
) -> None:
    a, b = _pair(seed, shape, dtype)
    t = torch.tensor(ts, dtype=torch.float64)
    for fn in (slerp, lerp):
        batch = fn(a, b, t)
        assert batch.shape == (len(ts), *shape)
        for k, tk in enumerate(ts):
            assert torch.equal(batch[k], fn(a, b, tk))


@settings(max_examples=10, deadline=None)
@given(seed=seeds, t=unit_t)
def test_slerp_keeps_the_gaussian_shell_norm_and_lerp_does_not(seed: int, t: float) -> None:
    # Two independent N(0, I) noises in D = 14·4·16·16 = 14336 dims: the norm of each is √D with a standard
    # deviation of ≈ 1/√2, i.e. 0.59 % of √D, and the two are nearly orthogonal, so slerp stays within
    # 3.5 % (≈ 6 standard deviations) of √D at every t, while lerp at t = 0.5 shrinks it by √2.
    a, b = _pair(seed, (14, 4, 16, 16), torch.float32)
    radius = math.sqrt(a.numel())
    assert abs(float(slerp(a, b, t).norm()) / radius - 1.0) < 0.035
    assert abs(float(lerp(a, b, 0.5).norm()) / radius - 1.0 / math.sqrt(2.0)) < 0.035


def test_inputs_are_not_modified() -> None:
    a, b = _pair(3, (4, 6))
    a0, b0 = a.clone(), b.clone()
    slerp(a, b, torch.linspace(0, 1, 5))
    lerp(a, b, 0.5)
    geodesic(a, b, torch.linspace(0, 1, 5), penalty=shell_penalty(5.0), iters=5)
    assert torch.equal(a, a0) and torch.equal(b, b0)


def test_invalid_inputs_raise() -> None:
    a, b = _pair(0, (4,))
    with pytest.raises(ValueError, match="same shape"):
        slerp(a, b[:3], 0.5)
    with pytest.raises(ValueError, match="same dtype"):
        slerp(a, b.double(), 0.5)
    with pytest.raises(ValueError, match="finite"):
        slerp(a, b, float("nan"))
    with pytest.raises(ValueError, match="ascending"):
        geodesic(a, b, torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        geodesic(a, b, torch.tensor([0.5, 1.2]))


# ------------------------------------------------------------------------------------------------ penalties


def test_shell_penalty_is_squared_distance_from_the_radius() -> None:
    points = torch.stack([torch.full((2, 2), 1.0), torch.zeros(2, 2), torch.full((2, 2), 3.0)])
    torch.testing.assert_close(shell_penalty(2.0)(points), torch.tensor([0.0, 4.0, 16.0]))


def test_gaussian_penalty_fits_with_two_references_in_1024_dims() -> None:
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(2, 1024, generator=g, dtype=torch.float64)
    penalty = GaussianPenalty.fit(reference, shrinkage=0.1)
    points = torch.randn(3, 1024, generator=g, dtype=torch.float64)
    values = penalty(points)
    # against a direct dense solve in numpy
    x = reference.numpy()
    s = np.cov(x, rowvar=False)
    cov = 0.9 * s + 0.1 * np.trace(s) / 1024 * np.eye(1024)
    diff = points.numpy() - x.mean(axis=0)
    expected = 0.5 * np.einsum("kd,kd->k", diff, np.linalg.solve(cov, diff.T).T)
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-8)
    assert float(penalty(reference.mean(0, keepdim=True))) == pytest.approx(0.0, abs=1e-12)
    # multi-dimensional points are flattened
    assert penalty(points.reshape(3, 32, 32)).shape == (3,)


def test_gaussian_penalty_without_shrinkage_on_too_few_references_raises() -> None:
    reference = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianPenalty.fit(reference, shrinkage=0.0)


# ------------------------------------------------------------------------------------------------ geodesic


def _energy(
    points: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    t: torch.Tensor,
    penalty: Penalty | None,
    weight: float,
) -> float:
    """The functional written out independently: chain a, interior points, b."""
    flat = points.double().reshape(len(t), -1)
    nodes = [0.0]
    chain = [a.double().flatten()]
    interior: list[torch.Tensor] = []
    for tk, pk in zip(t.tolist(), flat, strict=True):
        if 0.0 < tk < 1.0:
            nodes.append(tk)
            chain.append(pk)
            interior.append(pk)
    nodes.append(1.0)
    chain.append(b.double().flatten())
    e = sum(float((chain[i + 1] - chain[i]).square().sum()) / (nodes[i + 1] - nodes[i]) for i in range(len(chain) - 1))
    if interior and penalty is not None:
        e += weight * float(penalty(torch.stack(interior).reshape(len(interior), *a.shape)).sum())
    return e


sorted_ts = st.lists(unit_t, min_size=1, max_size=6, unique=True).map(sorted)


@settings(max_examples=25, deadline=None)
@given(
    seed=seeds,
    shape=shapes,
    ts=sorted_ts,
    kind=st.sampled_from(["shell", "gaussian"]),
    weight=st.floats(min_value=0.0, max_value=10.0),
    radius=st.floats(min_value=0.1, max_value=10.0),
    lr=st.floats(min_value=1e-3, max_value=1.0),
)
def test_geodesic_energy_never_exceeds_slerp_energy(
    seed: int,
    shape: tuple[int, ...],
    ts: list[float],
    kind: str,
    weight: float,
    radius: float,
    lr: float,
) -> None:
    a, b = _pair(seed, shape, torch.float64)
    t = torch.tensor(ts, dtype=torch.float64)
    penalty: Penalty
    if kind == "shell":
        penalty = shell_penalty(radius)
    else:
        ref = torch.randn(4, a.numel(), generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
        penalty = GaussianPenalty.fit(ref)
    path = geodesic(a, b, t, penalty=penalty, weight=weight, iters=20, lr=lr)
    assert path.energy <= path.slerp_energy
    assert not path.fell_back
    # the reported numbers are the functional on the returned and on the slerp points
    assert path.energy == pytest.approx(_energy(path.points, a, b, t, penalty, weight), rel=1e-9)
    assert path.slerp_energy == pytest.approx(_energy(slerp(a, b, t), a, b, t, penalty, weight), rel=1e-9)
    if 0.0 in ts:
        assert torch.equal(path.points[ts.index(0.0)], a)
    if 1.0 in ts:
        assert torch.equal(path.points[ts.index(1.0)], b)


def test_geodesic_actually_lowers_the_energy_and_stays_near_the_shell() -> None:
    a, b = _pair(1, (8, 8, 8))
    radius = math.sqrt(a.numel())
    t = torch.linspace(0, 1, 9)
    path = geodesic(a, b, t, penalty=shell_penalty(radius), weight=1.0, iters=200)
    assert path.energy < 0.95 * path.slerp_energy
    # the penalty keeps interior points much closer to the shell than lerp's √2 shrinkage at the middle
    mid = float(path.points[4].norm())
    assert mid > 0.8 * radius
    assert float(lerp(a, b, 0.5).norm()) < 0.75 * radius


@settings(max_examples=25, deadline=None)
@given(seed=seeds, shape=shapes, ts=sorted_ts, dtype=dtypes)
def test_geodesic_without_penalty_falls_back_to_slerp(
    seed: int, shape: tuple[int, ...], ts: list[float], dtype: torch.dtype
) -> None:
    a, b = _pair(seed, shape, dtype)
    t = torch.tensor(ts, dtype=torch.float64)
    path = geodesic(a, b, t)
    assert path.fell_back
    assert torch.equal(path.points, slerp(a, b, t))
    assert path.energy == path.slerp_energy


def test_geodesic_energy_handles_non_uniform_t_without_endpoints() -> None:
    a, b = _pair(5, (6,), torch.float64)
    a, b = a / a.norm(), b / b.norm()
    t = torch.tensor([0.1, 0.15, 0.6], dtype=torch.float64)
    path = geodesic(a, b, t)
    # on the unit sphere the slerp chord between t_i and t_{i+1} is 2·sin(θ·Δt/2); the chain includes the
    # endpoints a (t = 0) and b (t = 1), so Δt runs over 0.1, 0.05, 0.45, 0.4
    theta = _angle(a, b)
    expected = sum((2.0 * math.sin(theta * dt / 2.0)) ** 2 / dt for dt in (0.1, 0.05, 0.45, 0.4))
    assert path.slerp_energy == pytest.approx(expected, rel=1e-9)
    # and it is a lower Riemann-type bound of ∫‖ṗ‖² dt = θ² (chords are shorter than arcs)
    assert path.slerp_energy < theta**2


def test_interpolate_noise_slerp_keeps_the_shell_and_linear_does_not():
    from steering.interpolate import interpolate_noise

    g = torch.Generator().manual_seed(11)
    a, b = torch.randn(4, 8, 8, generator=g), torch.randn(4, 8, 8, generator=g)
    radius = math.sqrt(a.numel())
    mid, report = interpolate_noise(a, b, 0.5, "slerp")
    assert abs(float(mid.norm()) / radius - 1) < 0.05
    assert report == {"method": "slerp"}
    _, report = interpolate_noise(a, b, 0.5, "geodesic")
    assert report["method"] == "geodesic" and set(report["energy"]) == {"linear", "slerp", "geodesic"}
    linear, report = interpolate_noise(a, b, 0.5, "linear")
    assert float(linear.norm()) / radius < 0.8 and report == {"method": "linear"}
    assert torch.equal(interpolate_noise(a, b, 1.0, "geodesic")[0], b)


def test_every_point_of_a_geodesic_noise_path_stays_on_the_shell():
    from steering.interpolate import interpolate_noise

    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(4, 16, 16, generator=g), torch.randn(4, 16, 16, generator=g)
    for u in (0.1, 0.25, 0.5, 0.75, 0.9):
        point, report = interpolate_noise(a, b, u, "geodesic")
        expected = (1 - u) * float(a.norm()) + u * float(b.norm())
        assert abs(float(point.norm()) / expected - 1) < 0.01, (u, float(point.norm()), expected)
        # On the shell the chord energy cannot beat the straight line, and slerp is the shell's own path.
        energies = report["energy"]
        assert energies["linear"] <= energies["geodesic"] + 1e-6
        assert energies["geodesic"] == pytest.approx(energies["slerp"], rel=0.05)
