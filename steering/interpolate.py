"""Interpolation between two latents, noises or embeddings: lerp, slerp and an energy-minimising geodesic.

Every function treats each endpoint as ONE flattened vector, whatever its shape: an SVD noise tensor
(frames, 4, H/8, W/8) and a CLIP image embedding (1024,) are handled the same way. Inputs are never
modified; results keep the dtype of the endpoints (the arithmetic runs in float64 and is cast back).

``t`` is either a Python number, giving one point shaped like ``a``, or a 1-D tensor of K values,
giving a batch ``(K, *a.shape)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "GaussianPenalty",
    "GeodesicPath",
    "Penalty",
    "ShellPenalty",
    "geodesic",
    "interpolate_noise",
    "lerp",
    "shell_penalty",
    "slerp",
]

Penalty = Callable[[Tensor], Tensor]
"""Maps a batch of points ``(K, *shape)`` to one non-negative penalty per point ``(K,)``."""

# Below this angle (radians) between the endpoints, or this close to π, slerp's sin(θ) denominator is
# numerically meaningless and the path is computed as a lerp instead.
_COLINEAR_ANGLE = 1e-6


def _check_endpoints(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"`a` and `b` must have the same dtype, got {a.dtype} and {b.dtype}")
    if not a.is_floating_point():
        raise ValueError(f"`a` and `b` must be floating point, got {a.dtype}")
    if a.numel() == 0:
        raise ValueError("`a` and `b` must not be empty")


def _as_t64(t: float | Tensor, like: Tensor) -> tuple[Tensor, bool]:
    """Return ``t`` as a float64 tensor of shape (K,) on ``like``'s device, and whether it was batched."""
    if isinstance(t, Tensor):
        if t.dim() > 1:
            raise ValueError(f"`t` must be a number or a 1-D tensor, got shape {tuple(t.shape)}")
        batched = t.dim() == 1
        t64 = t.detach().to(device=like.device, dtype=torch.float64).reshape(-1)
    else:
        batched = False
        t64 = torch.tensor([float(t)], dtype=torch.float64, device=like.device)
    if not bool(torch.isfinite(t64).all()):
        raise ValueError(f"`t` must be finite, got {t}")
    return t64, batched


def _finish(a: Tensor, b: Tensor, t64: Tensor, path64: Tensor, batched: bool) -> Tensor:
    """Cast a float64 path (K, D) back to ``a``'s dtype and shape, with exact endpoints."""
    k = t64.shape[0]
    path = path64.to(a.dtype).reshape(k, *a.shape)
    expand = (k,) + (1,) * a.dim()
    t_b = t64.reshape(expand)
    path = torch.where(t_b == 0, a.unsqueeze(0), path)
    path = torch.where(t_b == 1, b.unsqueeze(0), path)
    return path if batched else path[0]


def _lerp64(a64: Tensor, b64: Tensor, t64: Tensor) -> Tensor:
    """(D,), (D,), (K,) -> (K, D) in float64."""
    t_col = t64[:, None]
    return a64[None, :] + t_col * (b64 - a64)[None, :]


def _slerp64(a64: Tensor, b64: Tensor, t64: Tensor) -> Tensor:
    """(D,), (D,), (K,) -> (K, D) in float64, with the lerp fallback for (anti)colinear endpoints."""
    na = torch.linalg.vector_norm(a64)
    nb = torch.linalg.vector_norm(b64)
    if float(na) == 0.0 or float(nb) == 0.0:
        return _lerp64(a64, b64, t64)
    ua = a64 / na
    ub = b64 / nb
    # θ = 2·atan2(‖â − b̂‖, ‖â + b̂‖) is accurate at both ends of [0, π], unlike acos(â·b̂).
    theta = float(2.0 * torch.atan2(torch.linalg.vector_norm(ua - ub), torch.linalg.vector_norm(ua + ub)))
    if theta < _COLINEAR_ANGLE or math.pi - theta < _COLINEAR_ANGLE:
        return _lerp64(a64, b64, t64)
    sin_theta = math.sin(theta)
    c_a = torch.sin((1.0 - t64) * theta) / sin_theta
    c_b = torch.sin(t64 * theta) / sin_theta
    return c_a[:, None] * a64[None, :] + c_b[:, None] * b64[None, :]


def lerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Linear interpolation ``(1 − t)·a + t·b``.

    Args:
        a, b: endpoints, any identical shape ``S`` and identical floating dtype.
        t: a number (result shaped ``S``) or a 1-D tensor of K values (result ``(K, *S)``). Values
            outside [0, 1] extrapolate.

    Returns:
        The interpolated point(s) in ``a``'s dtype; exactly ``a`` where t == 0 and exactly ``b`` where
        t == 1.

    Lerp between two independent unit Gaussian noises shrinks the norm (by √2 at t = 0.5), which a
    diffusion sampler does not expect; prefer :func:`slerp` for noise.
    """
    _check_endpoints(a, b)
    t64, batched = _as_t64(t, a)
    path64 = _lerp64(a.detach().reshape(-1).double(), b.detach().reshape(-1).double(), t64)
    return _finish(a, b, t64, path64, batched)


def slerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Spherical linear interpolation (Shoemake 1985) between two flattened vectors.

    With θ the angle between ``a`` and ``b`` (from their normalised dot product, in float64)::

        slerp(a, b, t) = sin((1 − t)·θ)/sin(θ) · a + sin(t·θ)/sin(θ) · b

    Two independent Gaussian noises in high dimension are nearly orthogonal with nearly equal norms, so
    the slerp path stays on the shell of radius ≈ √numel that the sampler expects at every t; lerp
    would cut through the inside of the shell (DESIGN.md §5).

    Fallbacks: when θ is below 1e-6 rad (colinear) the formula is 0/0 and lerp is returned, which is
    the limit. Exactly antipodal endpoints (θ ≈ π) have no unique great circle; lerp is returned
    there as well, which passes through the origin when ``b = −a``. A zero endpoint has no direction:
    lerp again.

    Args:
        a, b: endpoints, any identical shape ``S`` and identical floating dtype
            (float16, bfloat16, float32, float64).
        t: a number (result shaped ``S``) or a 1-D tensor of K values (result ``(K, *S)``).

    Returns:
        The interpolated point(s) in ``a``'s dtype; exactly ``a`` (bitwise) where t == 0 and exactly
        ``b`` where t == 1.
    """
    _check_endpoints(a, b)
    t64, batched = _as_t64(t, a)
    path64 = _slerp64(a.detach().reshape(-1).double(), b.detach().reshape(-1).double(), t64)
    return _finish(a, b, t64, path64, batched)


# --------------------------------------------------------------------------------------------------
# Penalties for leaving the data manifold
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellPenalty:
    """``(‖p‖ − radius)²`` per point: distance from the Gaussian shell.

    For unit Gaussian noise with n elements the norm concentrates at ``radius = √n``.
    Called on points ``(K, *shape)`` (flattened per point), returns ``(K,)`` in the points' dtype.
    """

    radius: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"`radius` must be finite and > 0, got {self.radius}")

    def __call__(self, points: Tensor) -> Tensor:
        if points.dim() < 1 or points.shape[0] == 0:
            raise ValueError(f"`points` must be (K, *shape) with K >= 1, got shape {tuple(points.shape)}")
        flat = points.reshape(points.shape[0], -1)
        norms: Tensor = torch.linalg.vector_norm(flat.to(torch.float64), dim=1)
        return ((norms - self.radius) ** 2).to(points.dtype)


def shell_penalty(radius: float) -> ShellPenalty:
    """Penalty ``(‖p‖ − radius)²``; for Gaussian noise use ``radius = sqrt(numel)``."""
    return ShellPenalty(radius=float(radius))


@dataclass(frozen=True, eq=False)
class GaussianPenalty:
    """Negative log-density, up to a constant, under a Gaussian fitted to reference vectors.

    ``penalty(p) = ½ (p − μ)ᵀ Σ⁻¹ (p − μ)`` with μ the reference mean and the shrunk covariance
    ``Σ = (1 − λ)·S + λ·(trace(S)/D)·I`` (Ledoit–Wolf-style shrinkage toward a scaled identity, with a
    fixed λ), S the unbiased sample covariance. Shrinkage makes Σ positive definite even with far fewer
    references than dimensions (N = 2, D = 1024). Stored as μ ``(D,)`` and the Cholesky factor L of Σ
    ``(D, D)``, both float64; the quadratic form is ``½‖L⁻¹(p − μ)‖²`` via a triangular solve.

    Use :meth:`fit`; D² memory makes it suited to embeddings (D = 1024), not to full noise tensors.
    """

    mean: Tensor
    cholesky: Tensor

    @classmethod
    def fit(cls, reference: Tensor, shrinkage: float = 0.1) -> GaussianPenalty:
        """Fit μ and Σ to ``reference`` of shape ``(N, D)``, N >= 2, with shrinkage λ in [0, 1]."""
        if reference.dim() != 2:
            raise ValueError(f"`reference` must be (N, D), got shape {tuple(reference.shape)}")
        n, d = reference.shape
        if n < 2:
            raise ValueError(f"`reference` needs at least 2 rows to estimate a covariance, got {n}")
        if not (0.0 <= shrinkage <= 1.0):
            raise ValueError(f"`shrinkage` must be in [0, 1], got {shrinkage}")
        x = reference.detach().to(torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("`reference` must be finite")
        mean = x.mean(dim=0)
        centred = x - mean
        sample_cov = centred.T @ centred / (n - 1)
        scale = float(torch.trace(sample_cov)) / d
        if scale <= 0.0:
            raise ValueError("`reference` rows are all identical: the covariance is zero")
        cov = (1.0 - shrinkage) * sample_cov + shrinkage * scale * torch.eye(d, dtype=torch.float64, device=x.device)
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError(
                f"covariance is not positive definite with shrinkage={shrinkage} (N={n}, D={d}); increase `shrinkage`"
            )
        return cls(mean=mean, cholesky=chol)

    def __call__(self, points: Tensor) -> Tensor:
        """``(K, *shape)`` with prod(shape) == D -> ``(K,)`` in the points' dtype."""
        d = self.mean.shape[0]
        if points.dim() < 1 or points.shape[0] == 0:
            raise ValueError(f"`points` must be (K, *shape) with K >= 1, got shape {tuple(points.shape)}")
        flat = points.reshape(points.shape[0], -1)
        if flat.shape[1] != d:
            raise ValueError(f"`points` must have {d} elements per point, got {flat.shape[1]}")
        diff = flat.to(torch.float64) - self.mean.to(flat.device)
        whitened: Tensor = torch.linalg.solve_triangular(self.cholesky.to(flat.device), diff.T, upper=False)
        return (0.5 * (whitened**2).sum(dim=0)).to(points.dtype)


MIN_CORPUS = 64  # reference points a data-driven penalty needs before it says anything about the manifold


@dataclass(frozen=True, eq=False)
class KnnPenalty:
    """Distance from the data, read off a reference corpus: the mean squared distance from a point to
    its `k` nearest corpus points, divided by the corpus's own typical value of that (the median over
    its points of the mean squared distance to their `k` nearest others), so 1 means "as far from the
    data as the data are from each other" whatever the embeddings' scale.

    Why this density model: the embeddings live near a curved, low-dimensional set in D = 1024, and a
    corpus of a few hundred points cannot fit a full Gaussian there (and a Gaussian has one mode: its
    geodesics cut across any curve). Nearest-neighbour distance is the data-driven choice of
    Arvanitidis, Hansen and Hauberg (2018, "Latent space oddity"), whose Riemannian metric grows with
    the distance to the nearest training points; used as a penalty on the path's points it bends the
    path onto the data, with no parameters beyond `k`. Differentiable (autograd through `cdist` and
    `topk`). Build it with :meth:`fit`.
    """

    corpus: Tensor  # (N, D) float64
    k: int
    scale: float

    @classmethod
    def fit(cls, corpus: Tensor, k: int = 8) -> KnnPenalty:
        """From ``corpus`` ``(N, D)`` with N >= ``MIN_CORPUS`` finite rows."""
        if corpus.dim() != 2:
            raise ValueError(f"`corpus` must be (N, D), got shape {tuple(corpus.shape)}")
        if corpus.shape[0] < MIN_CORPUS:
            raise ValueError(f"`corpus` needs at least {MIN_CORPUS} points, got {corpus.shape[0]}")
        if not 1 <= k < corpus.shape[0]:
            raise ValueError(f"`k` must be between 1 and {corpus.shape[0] - 1}, got {k}")
        x = corpus.detach().to(torch.float64)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("`corpus` must be finite")
        squared = torch.cdist(x, x) ** 2
        squared.fill_diagonal_(float("inf"))
        scale = float(squared.topk(k, dim=1, largest=False).values.mean(dim=1).median())
        if not scale > 0:
            raise ValueError("`corpus` points coincide: no distance to measure")
        return cls(corpus=x, k=k, scale=scale)

    def __call__(self, points: Tensor) -> Tensor:
        """``(K, *shape)`` with prod(shape) == D -> ``(K,)`` in the points' dtype."""
        if points.dim() < 1 or points.shape[0] == 0:
            raise ValueError(f"`points` must be (K, *shape) with K >= 1, got shape {tuple(points.shape)}")
        flat = points.reshape(points.shape[0], -1).to(torch.float64)
        squared = torch.cdist(flat, self.corpus.to(flat.device)) ** 2
        nearest = squared.topk(self.k, dim=1, largest=False).values.mean(dim=1)
        return (nearest / self.scale).to(points.dtype)


# --------------------------------------------------------------------------------------------------
# Geodesic
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GeodesicPath:
    """Result of :func:`geodesic`.

    Attributes:
        points: ``(K, *a.shape)`` in ``a``'s dtype, the path at the requested t values.
        energy: the energy functional of the returned path (evaluated in float64 before the cast).
        slerp_energy: the same functional on the slerp path at the same t values.
        fell_back: True when no penalty was given and the slerp path is returned unchanged.
        lerp_energy: the same functional on the straight line at the same t values.
    """

    points: Tensor
    energy: float
    slerp_energy: float
    fell_back: bool
    lerp_energy: float = math.nan


def _check_path_t(t: Tensor) -> None:
    if not isinstance(t, Tensor) or t.dim() != 1 or t.shape[0] == 0:
        raise ValueError("`t` must be a non-empty 1-D tensor")
    t64 = t.detach().double()
    if not bool(torch.isfinite(t64).all()) or float(t64.min()) < 0.0 or float(t64.max()) > 1.0:
        raise ValueError(f"`t` values must be in [0, 1], got {t.tolist()}")
    if t.shape[0] > 1 and not bool((t64[1:] > t64[:-1]).all()):
        raise ValueError(f"`t` must be strictly ascending, got {t.tolist()}")


def _path_energy(
    chain: Tensor, dt: Tensor, interior: Tensor, penalty: Penalty | None, weight: float, shape: torch.Size
) -> Tensor:
    """Σ‖p_{i+1} − p_i‖²/Δt_i over the chain (M, D) plus weight·Σ penalty over the interior (J, D)."""
    steps = chain[1:] - chain[:-1]
    energy = ((steps**2).sum(dim=1) / dt).sum()
    if penalty is not None and interior.shape[0] > 0:
        energy = energy + weight * penalty(interior.reshape(interior.shape[0], *shape)).sum()
    return energy


def geodesic(
    a: Tensor,
    b: Tensor,
    t: Tensor,
    penalty: Penalty | None = None,
    weight: float = 1.0,
    iters: int = 200,
    lr: float = 1e-2,
) -> GeodesicPath:
    """A discrete path from ``a`` to ``b`` that minimises path energy plus a manifold penalty.

    The functional (DESIGN.md §5), over the chain of nodes ``a (t=0), p(t_1), …, p(t_K), b (t=1)`` (the
    endpoints are added when ``t`` does not contain 0 or 1)::

        E = Σ_i ‖p_{i+1} − p_i‖² / (t_{i+1} − t_i)  +  weight · Σ_{0 < t_i < 1} penalty(p_i)

    The first term discretises ∫₀¹‖ṗ‖² dt, so non-uniform ``t`` is handled; without a penalty its
    minimiser is the straight line, and the penalty pulls the path back toward the data (the Gaussian
    shell for noise, a density fitted to reference embeddings for embeddings). The interior points start
    on the slerp path and are optimised with Adam (torch.autograd) in float64; the best iterate is kept,
    so ``energy <= slerp_energy`` always holds. Points at t == 0 / t == 1 are ``a`` / ``b`` exactly.

    Args:
        a, b: endpoints, identical shape ``S`` and floating dtype.
        t: ``(K,)`` strictly ascending values in [0, 1].
        penalty: a callable ``(J, *S) -> (J,)`` (e.g. :class:`ShellPenalty`, :class:`GaussianPenalty`),
            differentiable by autograd. ``None`` means no reference set is available: the slerp path is
            returned with ``fell_back=True``.
        weight: multiplier of the penalty term, >= 0.
        iters: number of Adam steps, >= 0.
        lr: Adam step size as a fraction of the endpoints' root-mean-square coordinate, so the same
            value suits unit-variance noise and small-valued embeddings.

    Returns:
        A :class:`GeodesicPath` with ``points`` of shape ``(K, *S)`` in ``a``'s dtype.
    """
    # 1. check inputs
    _check_endpoints(a, b)
    _check_path_t(t)
    if not (math.isfinite(weight) and weight >= 0.0):
        raise ValueError(f"`weight` must be finite and >= 0, got {weight}")
    if iters < 0:
        raise ValueError(f"`iters` must be >= 0, got {iters}")
    if not (math.isfinite(lr) and lr > 0.0):
        raise ValueError(f"`lr` must be finite and > 0, got {lr}")

    # 2. the slerp path and the chain of nodes including both endpoints
    a64 = a.detach().reshape(-1).double()
    b64 = b.detach().reshape(-1).double()
    t64 = t.detach().to(device=a.device, dtype=torch.float64)
    slerp64 = _slerp64(a64, b64, t64)
    inner = (t64 > 0) & (t64 < 1)
    nodes = torch.cat([t64.new_zeros(1), t64[inner], t64.new_ones(1)])
    dt = nodes[1:] - nodes[:-1]

    def chain_of(interior: Tensor) -> Tensor:
        return torch.cat([a64[None], interior, b64[None]])

    start = slerp64[inner]
    straight = _lerp64(a64, b64, t64)[inner]
    with torch.no_grad():
        slerp_energy = float(_path_energy(chain_of(start), dt, start, penalty, weight, a.shape))
        lerp_energy = float(_path_energy(chain_of(straight), dt, straight, penalty, weight, a.shape))

    # 3. no reference set: slerp is the answer
    if penalty is None or start.shape[0] == 0:
        return GeodesicPath(
            points=_finish(a, b, t64, slerp64, batched=True),
            energy=slerp_energy,
            slerp_energy=slerp_energy,
            fell_back=penalty is None,
            lerp_energy=lerp_energy,
        )

    # 4. Adam on the interior points, keeping the best iterate (the first one evaluated is slerp itself)
    rms = float(torch.sqrt(0.5 * (a64.square().mean() + b64.square().mean())))
    step = lr * (rms if rms > 0.0 else 1.0)
    interior = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([interior], lr=step)
    best_energy, best = slerp_energy, start
    for it in range(iters + 1):
        energy = _path_energy(chain_of(interior), dt, interior, penalty, weight, a.shape)
        value = float(energy.detach())
        if math.isfinite(value) and value < best_energy:
            best_energy, best = value, interior.detach().clone()
        if it == iters:
            break
        (interior.grad,) = torch.autograd.grad(energy, [interior])
        optimiser.step()

    # 5. put the optimised interior back among the requested t values
    path64 = slerp64.clone()
    path64[inner] = best
    return GeodesicPath(
        points=_finish(a, b, t64, path64, batched=True),
        energy=best_energy,
        slerp_energy=slerp_energy,
        fell_back=False,
        lerp_energy=lerp_energy,
    )


def interpolate_noise(a: Tensor, b: Tensor, u: float, method: str) -> tuple[Tensor, dict[str, Any]]:
    """A point at `u` between two unit-Gaussian noise draws of the same shape, with a report of the
    method used. `slerp` keeps to the Gaussian shell of radius √n that the sampler expects; `linear`
    cuts inside it. `geodesic` minimises the path energy with a shell penalty and then puts the point
    back on the shell (its norm interpolated between the endpoints'), since a point inside the shell
    is not noise the sampler expects; on the shell the least-energy path is the great circle, so it
    ends close to slerp. The report gives the three candidates' energies under one functional,
    E = ‖p − a‖²/u + ‖b − p‖²/(1 − u) (the chord energy of the path a → p → b)."""
    if method == "linear":
        return lerp(a, b, u), {"method": "linear"}
    if method == "slerp" or u in (0.0, 1.0):
        return slerp(a, b, u), {"method": method}
    path = geodesic(a, b, torch.tensor([u]), penalty=shell_penalty(math.sqrt(a.numel())))
    point = path.points[0].double()
    radius = (1 - u) * float(a.double().norm()) + u * float(b.double().norm())
    on_shell = (point * (radius / float(point.norm()))).to(a.dtype)

    def energy(p: Tensor) -> float:
        p64 = p.double()
        return float((p64 - a.double()).square().sum() / u + (b.double() - p64).square().sum() / (1 - u))

    energies = {"linear": energy(lerp(a, b, u)), "slerp": energy(slerp(a, b, u)), "geodesic": energy(on_shell)}
    return on_shell, {"method": "geodesic", "on_shell": True, "energy": energies}
