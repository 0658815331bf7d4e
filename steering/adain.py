"""Adaptive instance normalisation of SVD latents (Huang & Belongie, "Arbitrary Style Transfer in
Real-time with Adaptive Instance Normalization", ICCV 2017).

Latents are ``(B, F, C, H, W)``. Statistics are per channel over the spatial axes (H, W) of each frame,
or over (F, H, W) when ``over_frames`` (one set per clip, so every frame is moved the same way)::

    AdaIN(z, s) = σ(s)·(z − μ(z))/σ(z) + μ(s)

As in the reference implementation, σ includes ε under the root: σ = sqrt(Var + ε), with the population
variance. Arithmetic in float32 (float64 for float64 inputs); results in the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from steering.directions import broadcasts_to

__all__ = ["adain", "blend", "channel_stats"]


def _check_latents(name: str, x: Tensor) -> None:
    if x.dim() != 5 or not x.is_floating_point():
        raise ValueError(f"`{name}` must be floating latents (B, F, C, H, W), got {x.dtype} {tuple(x.shape)}")


def _work_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def channel_stats(x: Tensor, over_frames: bool = False, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and σ = sqrt(Var + eps) of latents.

    Args:
        x: ``(B, F, C, H, W)``.
        over_frames: pool over (F, H, W) instead of (H, W) per frame.

    Returns:
        ``(mean, std)``, each ``(B, F, C, 1, 1)``, or ``(B, 1, C, 1, 1)`` when ``over_frames``, in x's
        dtype; shaped to broadcast against x.
    """
    _check_latents("x", x)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"`eps` must be finite and >= 0, got {eps}")
    dims = (1, 3, 4) if over_frames else (3, 4)
    w = x.detach().to(_work_dtype(x))
    var, mean = torch.var_mean(w, dim=dims, correction=0, keepdim=True)
    return mean.to(x.dtype), torch.sqrt(var + eps).to(x.dtype)


def adain(z: Tensor, style_mean: Tensor, style_std: Tensor, eps: float = 1e-5, over_frames: bool = False) -> Tensor:
    """``σ(s)·(z − μ(z))/σ(z) + μ(s)`` with μ(z), σ(z) from :func:`channel_stats`.

    Args:
        z: ``(B, F, C, H, W)`` latents.
        style_mean, style_std: target statistics, broadcastable to ``(B, F, C, 1, 1)`` with size-1
            spatial axes, e.g. from ``channel_stats(style_latents)`` or a ``(C, 1, 1)`` tensor.
            ``style_std`` must be >= 0.
        eps: added to the variance of z under the root.
        over_frames: compute μ(z), σ(z) over (F, H, W) rather than per frame.

    Returns:
        ``z.shape`` in z's dtype, whose per-channel mean is style_mean and whose population std is
        style_std·sqrt(Var/(Var + eps)).
    """
    _check_latents("z", z)
    for name, stat in (("style_mean", style_mean), ("style_std", style_std)):
        if stat.dim() < 3 or stat.shape[-2:] != (1, 1):
            raise ValueError(f"`{name}` must end in size-1 spatial axes (..., C, 1, 1), got {tuple(stat.shape)}")
        if not broadcasts_to(stat.shape, z.shape):
            raise ValueError(f"`{name}` of shape {tuple(stat.shape)} does not broadcast to z {tuple(z.shape)}")
        if not bool(torch.isfinite(stat).all()):
            raise ValueError(f"`{name}` must be finite")
    if bool((style_std < 0).any()):
        raise ValueError("`style_std` must be >= 0")
    work = _work_dtype(z)
    mean, std = channel_stats(z.to(work), over_frames=over_frames, eps=eps)
    s_mean = style_mean.detach().to(device=z.device, dtype=work)
    s_std = style_std.detach().to(device=z.device, dtype=work)
    return (s_std * (z.detach().to(work) - mean) / std + s_mean).to(z.dtype)


def blend(z: Tensor, target: Tensor, strength: float) -> Tensor:
    """``(1 − strength)·z + strength·target``, strength in [0, 1]; exactly z at 0 and target at 1.

    Args:
        z, target: the same shape and dtype (e.g. latents and their AdaIN-restyled version).
    """
    if z.shape != target.shape or z.dtype != target.dtype:
        raise ValueError(
            f"`z` and `target` must match in shape and dtype, got {tuple(z.shape)} {z.dtype} "
            f"and {tuple(target.shape)} {target.dtype}"
        )
    if not (0.0 <= strength <= 1.0):
        raise ValueError(f"`strength` must be in [0, 1], got {strength}")
    if strength == 0.0:
        return z.detach().clone()
    if strength == 1.0:
        return target.detach().clone()
    work = _work_dtype(z)
    z_w = z.detach().to(work)
    return (z_w + strength * (target.detach().to(work) - z_w)).to(z.dtype)
