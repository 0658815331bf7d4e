"""`interpolation: "bidirectional"`: keyframe in-betweening that meets both ends, without training.

After ViBiDSampler (S. Yang, T. Kwon, J. C. Ye, "ViBiDSampler: Enhancing Video Interpolation Using
Bidirectional Diffusion Sampler", ICLR 2025) and Time Reversal Fusion (H. Feng, Z. Ding, Z. Xia,
S. Niklaus, V. Abrevaya, M. J. Black, X. Zhang, "Explorative Inbetweening of Time and Space",
ECCV 2024). SVD conditions a clip on its first frame only, so a per-frame morph between two
keyframes drifts away from the last one. Here every denoising step runs twice over the same latents
(`workers.pipeline.TimeReversal`):

1. an Euler step conditioned on the first keyframe (its embedding and latent held over every frame);
2. the result put back to the step's sigma with the job seed's noise;
3. the frames flipped in time and an Euler step conditioned on the last keyframe, then flipped back;

and in both passes the denoised estimate's first and last frames are held to the keyframes' own
latents (the clean VAE latents, scaled as the decoder reads them): the projection onto the
keyframes that ViBiDSampler takes from DDS (Chung, Lee, Ye, "Decomposed Diffusion Sampler for
Accelerating Large-Scale Inverse Problems", ICLR 2024). Two guided UNet calls per step, where a
plain job makes one.

The flipped pass is built last, from the conditioning every other operation has shaped: what they
added to the first keyframe's per-frame values (an embedding direction's frame schedule, say) is
added to the last keyframe's, in flipped frame order; references, the negative branch and the motion
bucket are the forward pass's.
"""

from dataclasses import replace
from typing import Any, Self

import torch

from api_schemas import KeyframeInterpolation
from workers.ops.base import ClipState, JobContext, Operation

PAPERS = [
    "ViBiDSampler (Yang, Kwon, Ye; ICLR 2025)",
    "Time Reversal Fusion (Feng et al.; ECCV 2024)",
    "DDS projection (Chung, Lee, Ye; ICLR 2024)",
]


class BidirectionalOp(Operation):
    name = "interpolation"

    def __init__(self) -> None:
        self.ends: torch.Tensor | None = None

    @classmethod
    def for_job(cls, ctx: JobContext) -> Self | None:
        job = ctx.job
        return cls() if job.keyframes and job.interpolation is KeyframeInterpolation.bidirectional else None

    def condition(self, ctx: JobContext, clip: ClipState) -> None:
        cond = clip.conditioning
        first_e, last_e = cond.key_embeddings[0], cond.key_embeddings[-1]
        first_l, last_l = cond.key_latents[0], cond.key_latents[-1]
        # (x - first) + last: with nothing added to the first keyframe, exactly the last keyframe's.
        reverse = replace(
            cond,
            embeddings=(cond.embeddings - first_e + last_e).flip(0),
            latents=(cond.latents - first_l + last_l).flip(0),
            reverse=None,
            ends=None,
        )
        cond.reverse, cond.ends = reverse, self.keyframe_latents(ctx)

    def keyframe_latents(self, ctx: JobContext) -> torch.Tensor:
        """(2, C, h, w): the two keyframes' clean VAE latents (no augmentation noise), scaled by the
        VAE's scaling factor, as the denoised latents are; encoded once per job."""
        if self.ends is None:
            pipe, plan = ctx.pipe, ctx.plan
            clean = torch.zeros_like(ctx.encoder.augmentation)
            latents = [
                pipe.encode_image_latent(ctx.images[f"keyframes[{i}].image"], plan.height, plan.width, clean, 0.0)
                for i in (0, len(ctx.job.keyframes or []) - 1)
            ]
            self.ends = torch.stack(latents).float() * pipe.vae.config.scaling_factor
        return self.ends

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        return {
            "method": str(KeyframeInterpolation.bidirectional),
            "unet_calls_per_step": 2,
            "held_frames": {"first": "keyframes[0].image", "last": "keyframes[1].image"},
            "renoise": "the job seed's generator after the initial draws, one draw per step",
            "after": PAPERS,
        }
