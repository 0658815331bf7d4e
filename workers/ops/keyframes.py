"""`keyframes: [{image, at}]` with `interpolation`: a morph inside one clip.

Frame f is conditioned at t = f / (F − 1) on the two keyframes around t, in both spaces SVD is
conditioned on: the CLIP image embedding and the VAE image latent (`steering.conditioning`).
`bidirectional` interpolates nothing here: its sampler (`workers.ops.bidirectional`) meets the two
keyframes from both ends.
`geodesic` bends the embedding path onto a reference corpus of embeddings: the job's own `corpus`
images (each encoded once per loaded model), else the model's (its spec's `geodesic_corpus`, encoded
once per loaded model: `SteerableVideoPipeline.geodesic_corpus`); without one, and for the VAE
latents, it is slerp, and the report says so (its `corpus` entry says which corpus it kept to).
"""

from typing import Any

from api_schemas import KeyframeInterpolation
from steering.conditioning import interpolate_both
from workers.ops.base import ClipState, JobContext, Operation


class KeyframesOp(Operation):
    name = "keyframes"

    def condition(self, ctx: JobContext, clip: ClipState) -> None:
        cond, method = clip.conditioning, ctx.job.interpolation
        if method is KeyframeInterpolation.bidirectional:
            # Each pass holds one keyframe over every frame (the first, as planned, and the last in the
            # time-flipped pass, `workers.ops.bidirectional`): nothing is interpolated.
            clip.report.update({"method": str(method), "passes": ["keyframes[0]", "keyframes[1], time-flipped"]})
            return
        penalty = None
        if method is KeyframeInterpolation.geodesic:
            penalty, clip.report["corpus"] = ctx.geodesic_penalty()
        cond.embeddings, cond.latents, report = interpolate_both(
            cond.key_embeddings,
            cond.key_latents,
            cond.key_positions,
            ctx.plan.num_frames,
            str(method),
            penalty,
        )
        clip.report.update(report)

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        keyframes = ctx.job.keyframes or []
        return {"count": len(keyframes), "at": [k.at for k in keyframes], "interpolation": str(ctx.job.interpolation)}
