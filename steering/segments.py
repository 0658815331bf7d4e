"""Where two segments of a long video meet: the overlap's blend weights and the blend itself.

A segment shares its first n latent frames with the previous segment's last n. After it is denoised,
overlap frame j (0-based) is w_j · previous + (1 − w_j) · new, with u_j = (j + 1) / (n + 1):

- `linear`: w_j = 1 − u_j (for n = 3: 0.75, 0.5, 0.25);
- `cosine`: w_j = (1 + cos(π · u_j)) / 2 (for n = 3: 0.854, 0.5, 0.146), flatter at both ends.

Neither weight reaches 0 or 1 inside the overlap, so the frame before and the frame after it belong
to one segment each and the blend hands over between them.
"""

import math

import torch
from torch import Tensor

__all__ = ["blend_overlap", "overlap_weights"]


def overlap_weights(overlap: int, blend: str) -> Tensor:
    """The previous segment's weight (overlap,) on each overlap frame, float64."""
    if overlap < 0:
        raise ValueError(f"overlap must be at least 0, got {overlap}")
    u = torch.arange(1, overlap + 1, dtype=torch.float64) / (overlap + 1)
    if blend == "linear":
        return 1.0 - u
    if blend == "cosine":
        return (1.0 + torch.cos(math.pi * u)) / 2.0
    raise ValueError(f"blend must be `linear` or `cosine`, got {blend!r}")


def blend_overlap(previous: Tensor, latents: Tensor, weights: Tensor) -> Tensor:
    """`latents` (B, F, C, h, w) with its first n frames blended with `previous` (B, n, C, h, w), the
    previous segment's last n frames, by `weights` (n,) (the previous segment's weight per frame)."""
    n = len(weights)
    if previous.shape[1] != n or latents.shape[1] < n:
        raise ValueError(f"an overlap of {n} frames needs {n} previous frames, got {previous.shape[1]}")
    if n == 0:
        return latents
    w = weights.to(latents.dtype).to(latents.device).view(1, n, 1, 1, 1)
    blended = latents.clone()
    blended[:, :n] = w * previous.to(latents.dtype) + (1 - w) * latents[:, :n]
    return blended
