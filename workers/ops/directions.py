"""`directions: [{source, space, strength, frames, steps, preserve}]`: z' = z + α·d.

Each direction is made after its `preserve` directions are projected out
(`workers.directions.resolve_directions`): unit length in the embedding space, so `strength` is a
distance; RMS entry 1 on the latents, so `strength` is per-element latent units at every resolution.
`space: "embedding"` moves the positive CLIP image token of each frame before the tokens are
assembled, in the job's order, a direction stored with its attribute predictor along that frame's own
gradient (`workers.directions.frame_directions`); `space: "latent"` adds its step's share of α·d to
the latents after each step in its `steps` window (after step i the latents are x0 + σ_{i+1}·ε,
Euler), α·d in total.
"""

from dataclasses import dataclass
from typing import Any

import torch

from steering.directions import apply_direction
from workers.directions import frame_directions, resolve_directions
from workers.ops.base import ClipState, JobContext, Operation, StepAction


@dataclass
class LatentEdit:
    """A direction on the latents: `vector` (C, h, w) or (C, 1, 1), `alpha` (B, S, F) per clip, step
    and frame."""

    vector: torch.Tensor
    alpha: torch.Tensor


@dataclass
class LatentDirections:
    """The latent directions of one batch, applied in the job's order."""

    edits: list[LatentEdit]

    def __call__(self, pipe: Any, step: int, latents: torch.Tensor) -> torch.Tensor:
        for edit in self.edits:
            alpha = edit.alpha[:, step]  # (B, F)
            if bool((alpha != 0).any()):
                shift = alpha.to(latents)[:, :, None, None, None] * edit.vector.to(latents)
                latents = latents + shift
        return latents


class DirectionsOp(Operation):
    name = "directions"

    def condition(self, ctx: JobContext, clip: ClipState) -> None:
        resolved = resolve_directions(ctx.plan, ctx.directions, strengths=clip.strengths)
        cond = clip.conditioning
        for direction in resolved:
            if direction.space == "embedding":
                # each frame's direction at its embedding as the earlier directions left it
                along = frame_directions(direction, cond.embeddings)
                cond.embeddings = apply_direction(cond.embeddings, along.to(cond.embeddings), direction.alpha[0])
        clip.step_edits[self.name] = [LatentEdit(d.vector, d.alpha[None]) for d in resolved if d.space == "latent"]

    def step_action(self, ctx: JobContext, clips: list[ClipState]) -> StepAction | None:
        per_clip = [clip.step_edits[self.name] for clip in clips]
        if not per_clip[0]:
            return None
        edits = [
            LatentEdit(vector=group[0].vector, alpha=torch.cat([e.alpha for e in group]))
            for group in zip(*per_clip, strict=True)
        ]
        return LatentDirections(edits)

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        described = []
        for i, direction in enumerate(ctx.job.directions):
            source = direction.source
            kind = "id" if source.id is not None else "path" if source.path is not None else "vector"
            kind = "text" if source.text is not None else kind
            # a text direction's prompts; its sha256 is of the vector they gave on this model
            texts = {"text": source.text, "from_text": source.from_text or ""} if source.text is not None else {}
            at = f"directions[{i}].source"
            predictor = ctx.directions.predictor(source, at) if direction.space == "embedding" else None
            described.append(
                {
                    "index": i,
                    "space": direction.space,
                    "source": kind,
                    **texts,
                    "preserve": len(direction.preserve),
                    # a stored attribute predictor's gradient at each frame's embedding, or one vector
                    "evaluated": "fixed" if predictor is None else "gradient_per_frame",
                    # what each vector was read from, so a replay can tell a stored direction that changed
                    "sha256": ctx.directions.digest(source),
                    "preserve_sha256": [ctx.directions.digest(p) for p in direction.preserve],
                }
            )
        return {"directions": described}
