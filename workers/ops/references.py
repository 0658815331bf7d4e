"""`references: [{image, weight}]`: extra CLIP image tokens in every cross-attention of the positive
branch, each entering the softmax as weight · exp(score) (`steering.conditioning.reference_tokens`).
The unconditional branch does not see them; weight 0 removes a token exactly."""

from typing import Any

from workers.ops.base import ClipState, JobContext, Operation


class ReferencesOp(Operation):
    name = "references"

    def condition(self, ctx: JobContext, clip: ClipState) -> None:
        clip.conditioning.references = ctx.reference_embeddings()
        clip.conditioning.reference_weights = [r.weight for r in ctx.job.references]

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        return {"weights": [r.weight for r in ctx.job.references]}
