"""`style: {image, strength, steps, over_frames}`: AdaIN of the latents toward a reference image.

Inside the `steps` window, after each step the latents' per-channel mean and std move toward the
style image's VAE latent statistics (in the denoising latents' scaled space), blended by `strength`:
AdaIN(z, s) = σ(s)·(z − μ(z))/σ(z) + μ(s) (Huang & Belongie 2017). It is noise-aware: after step i
the latents are x0 + σ_{i+1}·ε, so the target std is √(σ_style² + σ_{i+1}²), the reference's own at
the last step (σ = 0).
"""

from dataclasses import dataclass
from typing import Any, Self

import torch

from steering.adain import adain, blend, channel_stats
from steering.schedules import step_window
from workers.ops.base import ClipState, JobContext, Operation, StepAction


@dataclass
class StyleEdit:
    """AdaIN toward `mean`/`std` (C, 1, 1) in the denoising latents' (scaled) space, within `window` (S,)."""

    mean: torch.Tensor
    std: torch.Tensor
    strength: float
    window: torch.Tensor
    over_frames: bool = False

    def __call__(self, pipe: Any, step: int, latents: torch.Tensor) -> torch.Tensor:
        if self.strength <= 0 or not bool(self.window[step]):
            return latents
        sigma = float(pipe.scheduler.sigmas[step + 1])
        std = torch.sqrt(self.std.double() ** 2 + sigma**2).to(latents.dtype)
        moved = adain(latents, self.mean.to(latents), std.to(latents.device), over_frames=self.over_frames)
        return blend(latents, moved, self.strength)


class StyleOp(Operation):
    name = "style"

    def __init__(self, edit: StyleEdit) -> None:
        self.edit = edit

    @classmethod
    def for_job(cls, ctx: JobContext) -> Self | None:
        style = ctx.job.style
        if style is None:
            return None
        plan, pipe = ctx.plan, ctx.pipe
        # The reference's statistics without augmentation noise: it is a target, not a condition.
        clean = torch.zeros((1, 3, plan.height, plan.width), dtype=torch.float32, device=pipe._execution_device)
        latent = pipe.encode_image(ctx.images["style.image"], plan.height, plan.width, clean, 0.0).latent
        scaled = latent[None, None] * pipe.vae.config.scaling_factor  # (1, 1, C, h, w)
        mean, std = channel_stats(scaled)
        edit = StyleEdit(
            mean=mean[0, 0],
            std=std[0, 0],
            strength=style.strength,
            window=step_window(plan.steps, *style.steps),
            over_frames=style.over_frames,
        )
        return cls(edit)

    def step_action(self, ctx: JobContext, clips: list[ClipState]) -> StepAction | None:
        return self.edit

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        style = ctx.job.style
        assert style is not None
        return {"strength": style.strength, "steps": list(style.steps), "over_frames": style.over_frames}
