"""`sweep: {target, to, count, interpolation, batch_size}`: `count` clips along a path.

Clip k of a sweep sits at u_k = k / (count − 1) on its path (u = 0 for a sweep of one: the job as
written). Every clip draws its noise from its own generator seeded with the job's seed, so clip k is
the single job with clip k's parameters; batching them through the UNet changes only float rounding.

| target | clip k is the job with |
|---|---|
| seed | `variation: {seed: sweep.to, strength: u_k}` (noise interpolated with `sweep.interpolation`) |
| image | the conditioning interpolated from `image` to `sweep.to` at u_k, in both spaces |
| direction | `directions[sweep.direction].strength` = lerp(strength, sweep.to, u_k) |
| motion_bucket_id | `generation.motion_bucket_id` = round(lerp(motion_bucket_id, sweep.to, u_k)) |
"""

import dataclasses
from typing import Any, Self

import torch

from api_schemas import Interpolation, Sweep, SweepTarget
from steering.conditioning import interpolate_both
from steering.interpolate import interpolate_noise
from workers.errors import JobInputError
from workers.ops.base import ClipState, JobContext, Operation


def sweep_positions(count: int) -> list[float]:
    """u_k of each clip: evenly from 0 to 1, both ends included (0 alone for one clip)."""
    return [0.0] if count == 1 else [k / (count - 1) for k in range(count)]


class SweepOp(Operation):
    name = "sweep"

    def __init__(self, spec: Sweep, end_noise: torch.Tensor | None) -> None:
        self.spec, self.end_noise = spec, end_noise

    @classmethod
    def for_job(cls, ctx: JobContext) -> Self | None:
        spec = ctx.job.sweep
        if spec is None:
            return None
        return cls(spec, ctx.draw_latents(int(spec.to)) if spec.target is SweepTarget.seed else None)

    def expand(self, ctx: JobContext, clips: list[ClipState]) -> list[ClipState]:
        spec, (first,) = self.spec, clips
        expanded = []
        for k, u in enumerate(sweep_positions(spec.count)):
            clip = dataclasses.replace(first, index=k, u=u, params={"u": u}, report={}, strengths={}, step_edits={})
            clip.conditioning = dataclasses.replace(first.conditioning)
            if spec.target is SweepTarget.motion_bucket_id:
                start = clip.conditioning.motion_bucket_id
                clip.conditioning.motion_bucket_id = round(start + (int(spec.to) - start) * u)
                clip.params["motion_bucket_id"] = clip.conditioning.motion_bucket_id
            elif spec.target is SweepTarget.direction:
                start = ctx.job.directions[spec.direction].strength
                if not isinstance(start, int | float):
                    raise JobInputError(
                        f"directions[{spec.direction}].strength", "a sweep over a direction needs a number strength"
                    )
                clip.strengths[spec.direction] = float(start) + (float(spec.to) - float(start)) * u
                clip.params["strength"] = clip.strengths[spec.direction]
            expanded.append(clip)
        return expanded

    def noise(self, ctx: JobContext, clip: ClipState) -> None:
        if self.end_noise is None:
            return
        base = ctx.base_noise.latents
        clip.noise, clip.report["noise"] = interpolate_noise(base, self.end_noise, clip.u, str(self.spec.interpolation))
        clip.params["variation"] = {"seed": int(self.spec.to), "strength": clip.u}

    def condition(self, ctx: JobContext, clip: ClipState) -> None:
        if self.spec.target is not SweepTarget.image:
            return
        # The one conditioning image moves toward `sweep.to`, in both spaces, before anything else
        # (directions, references) acts on it.
        cond, method = clip.conditioning, self.spec.interpolation
        start = (cond.key_embeddings[0], cond.key_latents[0])
        end = ctx.encoder.image(ctx.images["sweep.to"])
        penalty = None
        if method is Interpolation.geodesic:
            penalty, clip.report["corpus"] = ctx.geodesic_penalty()
        embedding, latent, report = interpolate_both(
            torch.stack([start[0], end.embedding]),
            torch.stack([start[1], end.latent]),
            [0.0, 1.0],
            1,
            str(method),
            penalty,
            at=clip.u,
        )
        clip.report.update(report)
        frames = ctx.plan.num_frames
        cond.key_embeddings, cond.key_latents = embedding, latent
        cond.embeddings = embedding.expand(frames, -1)
        cond.latents = latent.expand(frames, -1, -1, -1)

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        spec = self.spec
        return {
            "target": str(spec.target),
            "to": spec.to,
            "count": spec.count,
            "interpolation": str(spec.interpolation),
            "batch_size": spec.batch_size,
        }
