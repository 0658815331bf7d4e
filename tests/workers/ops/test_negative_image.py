"""`negative_image`: the unconditional branch conditioned on an image instead of zeros."""

import torch


def test_the_negative_branch_carries_the_image_in_both_spaces(planned, image_paths):
    job = planned(negative_image=str(image_paths[2]))
    conditioning = job.stack(job.clips)[0]
    encoded = job.ctx.encoder.image(job.ctx.images["negative_image"])
    assert torch.equal(conditioning.negative_tokens[0, :, 0], encoded.embedding.expand(5, -1))
    assert torch.equal(conditioning.negative_image_latents[0], encoded.latent.expand(5, -1, -1, -1))
    # The positive branch is the job's own image.
    plain = planned()
    assert torch.equal(conditioning.tokens, plain.stack(plain.clips)[0].tokens)
