"""`negative_image`: the unconditional branch of classifier-free guidance conditioned on an image (its
CLIP embedding as the first token, its VAE latent on every frame) instead of SVD's zeros, so guidance
pushes away from it."""

from workers.ops.base import ClipState, JobContext, Operation


class NegativeImageOp(Operation):
    name = "negative_image"

    def condition(self, ctx: JobContext, clip: ClipState) -> None:
        negative = ctx.encoder.image(ctx.images["negative_image"])
        clip.conditioning.negative_embedding = negative.embedding
        clip.conditioning.negative_latent = negative.latent
