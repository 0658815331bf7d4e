"""Schedules over frames or denoising steps: strength ramps, step/frame windows, guidance scales.

All values are computed in float64 and returned as float32 tensors (bool for windows) on the CPU.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["constant", "frame_window", "guidance_scales", "ramp", "step_window", "strength_table"]

Curve = Literal["linear", "cosine"]
GuidanceShape = Literal["linear", "triangle", "constant"]


def _check_count(name: str, n: int, minimum: int = 1) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {n!r}")


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")


def _check_fraction_range(a: float, b: float) -> None:
    if not (0.0 <= a <= b <= 1.0):
        raise ValueError(f"window [a, b] must satisfy 0 <= a <= b <= 1, got [{a}, {b}]")


def _positions(n: int) -> Tensor:
    """x_i = i/(n−1) for i = 0…n−1 in float64; [0.0] when n == 1."""
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.arange(n, dtype=torch.float64) / (n - 1)


def ramp(start: float, end: float, n: int, curve: Curve = "linear") -> Tensor:
    """A strength ramp from ``start`` to ``end`` over ``n`` frames or steps.

    With x = i/(n−1) (x = 0 when n == 1) the weight is w = x (``linear``) or w = (1 − cos(π·x))/2
    (``cosine``, an ease-in-out), and the value is ``start·(1 − w) + end·w``, so the first value is
    exactly ``start`` and the last exactly ``end``.

    Returns:
        ``(n,)`` float32.
    """
    _check_count("n", n)
    _check_finite("start", start)
    _check_finite("end", end)
    x = _positions(n)
    if curve == "linear":
        w = x
    elif curve == "cosine":
        w = (1.0 - torch.cos(math.pi * x)) / 2.0
    else:
        raise ValueError(f"`curve` must be 'linear' or 'cosine', got {curve!r}")
    return (start * (1.0 - w) + end * w).to(torch.float32)


def constant(value: float, n: int) -> Tensor:
    """``(n,)`` float32 filled with ``value``."""
    _check_count("n", n)
    _check_finite("value", value)
    return torch.full((n,), float(value), dtype=torch.float32)


def step_window(num_steps: int, a: float, b: float) -> Tensor:
    """Which denoising steps lie in the fraction [a, b) of the process.

    Step i (0-based) covers the fraction [i/num_steps, (i+1)/num_steps) of the denoising; it is inside
    the window when its start lies in the half-open interval: ``a <= i/num_steps < b``. Hence [0, 1]
    covers every step, [a, a] covers none, and adjacent windows [a, b) and [b, c) never share a step.

    Returns:
        ``(num_steps,)`` bool.
    """
    _check_count("num_steps", num_steps)
    _check_fraction_range(a, b)
    start = torch.arange(num_steps, dtype=torch.float64) / num_steps
    return (start >= a) & (start < b)


def frame_window(num_frames: int, a: float, b: float) -> Tensor:
    """Which frames lie in the closed fraction [a, b] of the clip.

    Frame f sits at position x_f = f/(F−1) (x = 0 when F == 1); it is inside when ``a <= x_f <= b``.
    [0, 1] covers every frame; [a, a] covers the frame exactly at a, if any.

    Returns:
        ``(num_frames,)`` bool.
    """
    _check_count("num_frames", num_frames)
    _check_fraction_range(a, b)
    x = _positions(num_frames)
    return (x >= a) & (x <= b)


def guidance_scales(min_scale: float, max_scale: float, n: int, shape: GuidanceShape = "linear") -> Tensor:
    """Per-frame classifier-free guidance scales for SVD.

    - ``linear``: ``torch.linspace(min, max, n)``, exactly what diffusers'
      ``StableVideoDiffusionPipeline`` builds.
    - ``triangle``: ``min + (max − min)·(1 − |2x − 1|)`` with x = i/(n−1): ``min`` at both ends, ``max``
      at the middle frame (reached only when n is odd); symmetric, computed as |2i − (n−1)|/(n−1) so
      frame i and frame n−1−i get bitwise equal values. n == 1 gives [min].
    - ``constant``: ``max`` everywhere.

    Returns:
        ``(n,)`` float32.
    """
    _check_count("n", n)
    _check_finite("min_scale", min_scale)
    _check_finite("max_scale", max_scale)
    if shape == "linear":
        return torch.linspace(min_scale, max_scale, n, dtype=torch.float32)
    if shape == "triangle":
        if n == 1:
            return torch.full((1,), float(min_scale), dtype=torch.float32)
        i = torch.arange(n, dtype=torch.float64)
        tri = 1.0 - (2.0 * i - (n - 1)).abs() / (n - 1)
        return (min_scale + (max_scale - min_scale) * tri).to(torch.float32)
    if shape == "constant":
        return torch.full((n,), float(max_scale), dtype=torch.float32)
    raise ValueError(f"`shape` must be 'linear', 'triangle' or 'constant', got {shape!r}")


def strength_table(
    strength: float,
    num_steps: int,
    num_frames: int,
    ramp_to: float | None = None,
    over: Literal["frames", "steps"] = "frames",
    curve: Curve = "linear",
) -> Tensor:
    """(S, F) strength at each denoising step and frame: `strength` everywhere, or with `ramp_to` a
    ramp from `strength` to `ramp_to` over the frames or over the steps."""
    _check_count("num_steps", num_steps)
    _check_count("num_frames", num_frames)
    if ramp_to is None:
        return torch.full((num_steps, num_frames), float(strength), dtype=torch.float32)
    if over == "frames":
        values = ramp(strength, ramp_to, num_frames, curve)
        return values[None, :].expand(num_steps, num_frames).clone()
    values = ramp(strength, ramp_to, num_steps, curve)
    return values[:, None].expand(num_steps, num_frames).clone()
