"""Geometry of a discrete path (latents per frame, interpolation points): length, step norms, smoothness.

A path is ``points`` of shape ``(K, *shape)``: K points along the first axis, each flattened to one
vector. Arithmetic runs in float64; results are returned in the points' dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["path_length", "path_smoothness", "step_norms"]


def _flat64(points: Tensor) -> Tensor:
    if points.dim() < 1 or points.shape[0] == 0:
        raise ValueError(f"`points` must be (K, *shape) with K >= 1, got shape {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"`points` must be floating point, got {points.dtype}")
    return points.detach().reshape(points.shape[0], -1).to(torch.float64)


def step_norms(points: Tensor) -> Tensor:
    """``‖p_{i+1} − p_i‖`` for i = 0…K−2: ``(K, *shape) -> (K−1,)``."""
    flat = _flat64(points)
    norms: Tensor = torch.linalg.vector_norm(flat[1:] - flat[:-1], dim=1)
    return norms.to(points.dtype)


def path_length(points: Tensor) -> Tensor:
    """Polyline length ``Σ_i ‖p_{i+1} − p_i‖``: ``(K, *shape) -> ()``; 0 for a single point."""
    flat = _flat64(points)
    norms: Tensor = torch.linalg.vector_norm(flat[1:] - flat[:-1], dim=1)
    return norms.sum().to(points.dtype)


def path_smoothness(points: Tensor) -> Tensor:
    """Mean squared second difference ``mean_i ‖p_{i+1} − 2p_i + p_{i−1}‖²`` over i = 1…K−2.

    A discrete acceleration: 0 for points equally spaced on a straight line, growing with bends and
    uneven spacing (lower is smoother). ``(K, *shape) -> ()``; defined as 0 when K < 3, where no second
    difference exists.
    """
    flat = _flat64(points)
    if flat.shape[0] < 3:
        return torch.zeros((), dtype=points.dtype, device=points.device)
    second = flat[2:] - 2.0 * flat[1:-1] + flat[:-2]
    return (second**2).sum(dim=1).mean().to(points.dtype)
