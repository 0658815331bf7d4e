"""Semantic directions: normalisation, orthonormalisation, conditional projection, application.

A direction is a vector d of shape ``(D,)`` in the space it edits: the 1024-d CLIP image embedding, or a
flattened latent. Editing is the linear move of Shen et al., "Interpreting the Latent Space of GANs for
Semantic Face Editing" (InterFaceGAN, CVPR 2020): ``z' = z + α·d``; conditional manipulation removes
from d its components along directions that must be preserved before moving.

Arithmetic runs in float64 and results are cast back to the input dtype; inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DependentDirectionError",
    "apply_direction",
    "broadcasts_to",
    "gram_schmidt",
    "normalize",
    "project_out",
]


def broadcasts_to(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without enlarging it."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False))


class DependentDirectionError(ValueError):
    """A direction lies (numerically) in the span of others, so it has no component of its own left."""


def _check_matrix(name: str, x: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"`{name}` must be (K, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"`{name}` must be floating point, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name}` must be finite")


def normalize(d: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit-norm along the last axis: ``d / ‖d‖``.

    Args:
        d: ``(..., D)``; every vector is normalised on its own.
        eps: norms at or below this raise, since a zero vector has no direction.

    Returns:
        ``(..., D)`` in ``d``'s dtype.
    """
    if d.dim() == 0 or not d.is_floating_point():
        raise ValueError(f"`d` must be a floating tensor (..., D), got {d.dtype} of shape {tuple(d.shape)}")
    d64 = d.detach().to(torch.float64)
    norms: Tensor = torch.linalg.vector_norm(d64, dim=-1, keepdim=True)
    if not bool((norms > eps).all()):
        raise ValueError(f"`d` must not contain zero vectors (norm <= {eps}), got min norm {float(norms.min())}")
    return (d64 / norms).to(d.dtype)


def _orthonormal_rows64(ds64: Tensor, tol: float, drop_dependent: bool) -> Tensor:
    """Modified Gram–Schmidt on float64 rows, each vector orthogonalised twice ("twice is enough")."""
    basis: list[Tensor] = []
    for i, v in enumerate(ds64):
        norm0 = float(torch.linalg.vector_norm(v))
        r = v.clone()
        for _ in range(2):
            for q in basis:
                r = r - (q @ r) * q
        norm = float(torch.linalg.vector_norm(r))
        if norm0 == 0.0 or norm <= tol * norm0:
            if drop_dependent:
                continue
            raise DependentDirectionError(
                f"direction {i} is (numerically) a combination of the previous ones: its remainder has "
                f"relative norm {norm / norm0 if norm0 else 0.0:.3g} <= tol={tol}"
            )
        basis.append(r / norm)
    if not basis:
        return ds64.new_zeros((0, ds64.shape[1]))
    return torch.stack(basis)


def gram_schmidt(ds: Tensor, tol: float = 1e-6, drop_dependent: bool = False) -> Tensor:
    """Orthonormalise directions in order (modified Gram–Schmidt with re-orthogonalisation).

    Row i of the result spans the part of ``ds[i]`` orthogonal to ``ds[0..i-1]``, so the first direction
    keeps its orientation and later ones give way to earlier ones.

    A row whose remainder after removing the earlier rows has norm <= ``tol``·(its original norm) has no
    direction of its own: by default this raises :class:`DependentDirectionError` naming the row; with
    ``drop_dependent=True`` such rows are skipped, and the result has fewer rows.

    Args:
        ds: ``(K, D)`` directions, any scale.

    Returns:
        ``(K, D)`` (or ``(K', D)``, K' <= K, when dropping) with orthonormal rows, in ``ds``'s dtype.
    """
    _check_matrix("ds", ds)
    return _orthonormal_rows64(ds.detach().to(torch.float64), tol, drop_dependent).to(ds.dtype)


def project_out(d: Tensor, preserve: Tensor, tol: float = 1e-6) -> Tensor:
    """Conditional manipulation: remove from ``d`` its components along ``preserve``, then renormalise.

    With Q the orthonormalised rows of ``preserve`` (Gram–Schmidt, redundant rows dropped)::

        d' = (d − Qᵀ Q d) / ‖d − Qᵀ Q d‖

    Moving along d' leaves every linear score ``z·p`` for p in ``preserve`` unchanged (InterFaceGAN's
    conditional manipulation).

    Args:
        d: ``(D,)`` or ``(K, D)`` directions to edit along.
        preserve: ``(M, D)`` directions to leave alone; M may be 0.
        tol: if what remains of a direction is at most ``tol`` times its norm (d lies in the span of
            ``preserve``), :class:`DependentDirectionError` is raised.

    Returns:
        Unit direction(s) shaped like ``d``, in ``d``'s dtype.
    """
    if d.dim() not in (1, 2) or not d.is_floating_point():
        raise ValueError(f"`d` must be a floating (D,) or (K, D) tensor, got {d.dtype} {tuple(d.shape)}")
    _check_matrix("preserve", preserve)
    if preserve.shape[1] != d.shape[-1]:
        raise ValueError(f"`preserve` must have D={d.shape[-1]} columns, got {preserve.shape[1]}")
    d64 = d.detach().to(torch.float64).reshape(-1, d.shape[-1])
    q = _orthonormal_rows64(preserve.detach().to(torch.float64).to(d.device), tol, drop_dependent=True)
    remainder = d64 - (d64 @ q.T) @ q
    norms: Tensor = torch.linalg.vector_norm(remainder, dim=1, keepdim=True)
    original: Tensor = torch.linalg.vector_norm(d64, dim=1, keepdim=True)
    if not bool((norms > tol * original).all()) or not bool((original > 0).all()):
        raise DependentDirectionError(
            "`d` lies in the span of `preserve`: nothing is left to move along after projecting it out"
        )
    return (remainder / norms).to(d.dtype).reshape(d.shape)


def apply_direction(z: Tensor, d: Tensor, alpha: float | Tensor) -> Tensor:
    """``z' = z + α·d`` (InterFaceGAN-style linear edit).

    Args:
        z: ``(..., D)`` points, e.g. ``(D,)`` one embedding or ``(F, D)`` one per frame.
        d: ``(D,)`` direction, used as given (normalise it for α to be a distance); or one direction
            per point, ``(..., D)`` broadcastable to z (e.g. ``(F, D)``: a direction field evaluated at
            each frame's own z).
        alpha: a number, or a tensor broadcastable to ``z.shape[:-1]`` (e.g. ``(F,)`` per frame for z of
            shape ``(F, D)``, from a schedule); it must not enlarge the shape of z.

    Returns:
        ``z.shape`` in ``z``'s dtype; wherever α == 0 the result equals ``z`` exactly.
    """
    if z.dim() == 0 or not z.is_floating_point():
        raise ValueError(f"`z` must be a floating tensor (..., D), got {z.dtype} of shape {tuple(z.shape)}")
    if d.dim() == 0 or d.shape[-1] != z.shape[-1] or not broadcasts_to(d.shape, z.shape):
        raise ValueError(
            f"`d` must be ({z.shape[-1]},) or broadcast to z's shape {tuple(z.shape)}, got {tuple(d.shape)}"
        )
    if not bool(torch.isfinite(d).all()):
        raise ValueError("`d` must be finite")
    lead = z.shape[:-1]
    a64 = torch.as_tensor(alpha, dtype=torch.float64, device=z.device)
    if not broadcasts_to(a64.shape, lead):
        raise ValueError(f"`alpha` of shape {tuple(a64.shape)} does not broadcast to z's leading shape {tuple(lead)}")
    if not bool(torch.isfinite(a64).all()):
        raise ValueError("`alpha` must be finite")
    a_col = a64.unsqueeze(-1)
    moved = (z.detach().to(torch.float64) + a_col * d.detach().to(device=z.device, dtype=torch.float64)).to(z.dtype)
    return torch.where(a_col == 0, z, moved)
