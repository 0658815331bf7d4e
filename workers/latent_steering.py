"""Steering that acts on the latents during denoising, through `callback_on_step_end` only.

After step i the latents are x = x0 + σ_{i+1}·ε (Euler, diffusers' EulerDiscreteScheduler). Latent
directions add their step's share of α·d; style moves each channel's statistics toward the
reference's, noise-aware: the target std is sqrt(σ_style² + σ_{i+1}²), which is the reference's own
std at the last step (σ = 0).
"""

from dataclasses import dataclass, field
from typing import Any

import torch

from steering.adain import adain, blend


@dataclass
class LatentEdit:
    """A direction on the latents: `vector` (C, h, w) or (C, 1, 1), `alpha` (B, S, F) per clip/step/frame."""

    vector: torch.Tensor
    alpha: torch.Tensor


@dataclass
class StyleEdit:
    """AdaIN toward `mean`/`std` (C, 1, 1) in the denoising latents' (scaled) space, within `window` (S,)."""

    mean: torch.Tensor
    std: torch.Tensor
    strength: float
    window: torch.Tensor
    over_frames: bool = False


@dataclass
class LatentSteering:
    """The step callback's latent work for one batch of clips; a no-op when it holds nothing."""

    edits: list[LatentEdit] = field(default_factory=list)
    style: StyleEdit | None = None

    def __bool__(self) -> bool:
        return bool(self.edits) or self.style is not None

    def __call__(self, pipe: Any, step: int, latents: torch.Tensor) -> torch.Tensor:
        for edit in self.edits:
            alpha = edit.alpha[:, step]  # (B, F)
            if bool((alpha != 0).any()):
                shift = alpha.to(latents)[:, :, None, None, None] * edit.vector.to(latents)
                latents = latents + shift
        style = self.style
        if style is not None and style.strength > 0 and bool(style.window[step]):
            sigma = float(pipe.scheduler.sigmas[step + 1])
            std = torch.sqrt(style.std.double() ** 2 + sigma**2).to(latents.dtype)
            moved = adain(latents, style.mean.to(latents), std.to(latents.device), over_frames=style.over_frames)
            latents = blend(latents, moved, style.strength)
        return latents
