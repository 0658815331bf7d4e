"""`keyframes`: each frame conditioned on the keyframes interpolated at its position, in both spaces."""

import torch

from workers.ops.keyframes import KeyframesOp


def keys(paths, a=1, b=2):
    return [{"image": str(paths[a]), "at": 0.0}, {"image": str(paths[b]), "at": 1.0}]


def test_first_and_last_frames_are_the_keyframes(planned, image_paths):
    job = planned(image=None, keyframes=keys(image_paths), interpolation="linear")
    (op,) = job.operations
    assert isinstance(op, KeyframesOp)
    cond = job.clips[0].state.conditioning
    assert torch.equal(cond.embeddings[0], cond.key_embeddings[0])
    assert torch.equal(cond.embeddings[-1], cond.key_embeddings[1])
    assert torch.equal(cond.latents[-1], cond.key_latents[1])
    # Linear: frame 2 of 5 sits at t = 0.5.
    middle = (cond.key_embeddings[0] + cond.key_embeddings[1]) / 2
    assert torch.allclose(cond.embeddings[2], middle, atol=1e-6)
    assert job.clips[0].report["embedding"]["method"] == "linear"
    assert op.describe(job.ctx) == {"count": 2, "at": [0.0, 1.0], "interpolation": "linear"}


def test_a_morph_between_one_image_is_that_image(planned, image_paths):
    morph = planned(image=None, keyframes=keys(image_paths, 1, 1), interpolation="slerp")
    still = planned(image=str(image_paths[1]))
    a, b = morph.stack(morph.clips)[0], still.stack(still.clips)[0]
    assert torch.allclose(a.tokens, b.tokens, atol=1e-6)
    assert torch.allclose(a.image_latents, b.image_latents, atol=1e-6)


def test_geodesic_reports_its_energy_beside_slerps(planned, image_paths):
    job = planned(image=None, keyframes=keys(image_paths), interpolation="geodesic")
    report = job.clips[0].report
    assert report["embedding"]["method"] == "geodesic" and "slerp_energy" in report["embedding"]
    assert report["image_latent"]["method"] == "slerp" and "fallback" in report["image_latent"]
