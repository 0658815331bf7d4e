"""`variation: {seed, strength}`: the initial noise slerped toward a second seed's noise.

Slerp keeps the norm of unit Gaussian noise (the shell of radius √n the sampler expects), so every
strength gives noise the sampler was trained on; strength 0 is the job's own noise exactly.
"""

from typing import Any, Self

import torch

from api_schemas import Variation
from steering.interpolate import slerp
from workers.ops.base import ClipState, JobContext, Operation


class VariationOp(Operation):
    name = "variation"

    def __init__(self, spec: Variation, target: torch.Tensor) -> None:
        self.spec, self.target = spec, target

    @classmethod
    def for_job(cls, ctx: JobContext) -> Self | None:
        spec = ctx.job.variation
        return None if spec is None else cls(spec, ctx.draw_latents(spec.seed))

    def noise(self, ctx: JobContext, clip: ClipState) -> None:
        clip.noise = slerp(clip.noise, self.target, self.spec.strength)

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        return {"seed": self.spec.seed, "strength": self.spec.strength}
