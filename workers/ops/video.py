"""`video: {source, strength, start, fit, noise}`: edit a real clip (SDEdit, Meng et al. 2022, on SVD).

The clip's frames (read at the job's fps and size, `workers.video_input`) are VAE-encoded to clean
latents z0 (the latent distribution's mode, scaled as denoising holds latents). Denoising starts at
step k = round((1 − strength) · steps) from latents at σ_k:

- `noise: random`: z0 + σ_k · ε, with ε the clip's unit initial noise (the job seed's, after
  `variation` or a seed sweep moved it);
- `noise: inverted`: z0 run backwards through the Euler ODE to σ_k under the batch's conditioning
  (`workers.inversion`), so that an unedited job comes back close to the clip.

Steps k to the end then run with every steering operation of the job: embedding directions,
references, the negative image and keyframes shape the conditioning; latent directions and style act
on the steps that run. k = steps (strength 0) runs no step: the result is the clip's own VAE round
trip. The conditioning image is the job's `image`, else the clip's first frame (the engine hands the
first frame to the job as its `image`).
"""

from collections.abc import Callable
from typing import Any, Self

import numpy as np
import torch

from api_schemas.video import VideoEdit, VideoNoise, first_step
from workers.errors import JobInputError
from workers.inversion import invert
from workers.ops.base import ClipState, JobContext, Operation, Start
from workers.pipeline import Conditioning, SteerableVideoPipeline


@torch.no_grad()
def encode_clip(pipe: SteerableVideoPipeline, frames: np.ndarray, chunk: int) -> torch.Tensor:
    """Clean latents (1, F, C, h, w) of uint8 frames (F, H, W, 3), scaled by the VAE's scaling factor (the
    space denoising runs in), encoded `chunk` frames at a time."""
    device = pipe._execution_device
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    needs_upcasting = pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast
    if needs_upcasting:
        pipe.vae.to(dtype=torch.float32)
    try:
        latents = [
            pipe.vae.encode(part.to(device=device, dtype=pipe.vae.dtype)).latent_dist.mode().float()
            for part in pixels.split(max(1, chunk))
        ]
    finally:
        if needs_upcasting:
            pipe.vae.to(dtype=torch.float16)
    return torch.cat(latents)[None] * pipe.vae.config.scaling_factor


class VideoOp(Operation):
    name = "video"

    def __init__(self, spec: VideoEdit, clean: torch.Tensor, first: int) -> None:
        self.spec, self.clean, self.first = spec, clean, first

    @classmethod
    def for_job(cls, ctx: JobContext) -> Self | None:
        spec = ctx.job.video
        if spec is None:
            return None
        if ctx.video is None:
            raise JobInputError("video.source", "the video was not read")
        plan = ctx.plan
        clean = encode_clip(ctx.pipe, ctx.video.frames, plan.decode_chunk_size)
        return cls(spec, clean, first_step(spec.strength, plan.steps))

    def start(
        self,
        ctx: JobContext,
        clips: list[ClipState],
        conditioning: Conditioning,
        on_step: Callable[[int], None] | None = None,
    ) -> Start:
        steps, pipe = ctx.plan.steps, ctx.pipe
        clean = self.clean.expand(len(clips), -1, -1, -1, -1).to(pipe._execution_device)
        if self.first >= steps:
            return Start(steps, clean.clone())
        if self.spec.noise is VideoNoise.inverted:
            return Start(self.first, invert(pipe, conditioning, clean, steps, self.first, on_step))
        pipe.scheduler.set_timesteps(steps, device=pipe._execution_device)
        sigma = float(pipe.scheduler.sigmas[self.first])
        noise = torch.cat([clip.noise for clip in clips]).to(device=clean.device, dtype=torch.float32)
        return Start(self.first, clean + sigma * noise)

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        spec, steps = self.spec, ctx.plan.steps
        return {
            "strength": spec.strength,
            "start": spec.start,
            "fit": str(spec.fit),
            "noise": str(spec.noise),
            "first_step": self.first,
            "steps_run": steps - self.first,
            "conditioning": "image"
            if ctx.job.image is not None
            else "keyframes"
            if ctx.job.keyframes
            else "first frame",
        }
