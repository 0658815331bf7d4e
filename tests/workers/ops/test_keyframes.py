"""`keyframes`: each frame conditioned on the keyframes interpolated at its position, in both spaces."""

from pathlib import Path

import pytest
import torch

from steering.interpolate import MIN_CORPUS
from vsteer.pictures import smooth_picture
from workers.corpus import EmbeddingCorpus
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


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 pictures: the smallest reference corpus a geodesic uses."""
    folder = tmp_path_factory.mktemp("corpus")
    for seed in range(MIN_CORPUS):
        smooth_picture(100 + seed, (64, 64)).save(folder / f"{seed:03d}.png")
    return folder


def test_geodesic_without_a_corpus_is_slerp_and_says_so(planned, image_paths):
    job = planned(image=None, keyframes=keys(image_paths), interpolation="geodesic")
    report = job.clips[0].report["embedding"]
    assert (report["method"], report["interpolation_used"]) == ("slerp", "slerp") and "fallback" in report
    assert "energy" not in report


def test_geodesic_on_the_models_corpus_reports_three_energies_and_encodes_it_once(
    planned, image_paths, registry, corpus_folder, monkeypatch
):
    corpus = EmbeddingCorpus(corpus_folder)
    monkeypatch.setattr(registry.get("tiny").pipeline, "geodesic_corpus", corpus)
    for _ in range(2):
        job = planned(image=None, keyframes=keys(image_paths), interpolation="geodesic")
        report = job.clips[0].report
        embedding = report["embedding"]
        assert (embedding["method"], embedding["interpolation_used"]) == ("geodesic", "geodesic")
        assert embedding["energy"] <= min(embedding["slerp_energy"], embedding["lerp_energy"]) + 1e-9
        assert report["image_latent"]["method"] == "slerp" and "fallback" in report["image_latent"]
    assert corpus.encoded == MIN_CORPUS  # the second job read the cached embeddings


def test_a_jobs_own_corpus_takes_the_models_place_and_each_picture_is_encoded_once_per_model(
    planned, image_paths, registry, corpus_folder
):
    pictures = sorted(str(p) for p in corpus_folder.iterdir())
    cache = registry.get("tiny").pipeline.embedding_cache
    before = cache.encoded
    reports = []
    for corpus in (pictures, pictures[::-1]):  # the same pictures, cited again in another order
        job = planned(image=None, keyframes=keys(image_paths), interpolation="geodesic", corpus=corpus)
        reports.append(job.clips[0].report)
    first, again = reports
    assert first["corpus"] == {"source": "job", "images": MIN_CORPUS, "encoded": MIN_CORPUS}
    assert again["corpus"] == {"source": "job", "images": MIN_CORPUS, "encoded": 0}
    assert cache.encoded - before == MIN_CORPUS
    for report in reports:
        embedding = report["embedding"]
        assert (embedding["method"], embedding["interpolation_used"]) == ("geodesic", "geodesic")
        assert embedding["energy"] <= min(embedding["slerp_energy"], embedding["lerp_energy"]) + 1e-9
    # the rows follow the job's order: the same set reversed is the same penalty, so the same path
    assert first["embedding"]["energy"] == pytest.approx(again["embedding"]["energy"], rel=1e-6)


def test_the_cache_keys_pictures_by_their_pixels_and_drops_the_least_recently_used(registry):
    from workers.corpus import EmbeddingCache

    pipe = registry.get("tiny").pipeline
    cache = EmbeddingCache(capacity=2)
    a, b, c = (smooth_picture(seed, (64, 64)) for seed in (1, 2, 3))
    rows, fresh = cache.embeddings(pipe, [a, b, a.copy()])  # a copy is the same picture
    assert fresh == 2 and torch.equal(rows[0], rows[2])
    assert torch.allclose(rows[1], pipe.encode_image_embedding(b).float(), atol=1e-6)
    cache.embeddings(pipe, [a])  # a is now the most recently used
    assert cache.embeddings(pipe, [c])[1] == 1  # b goes
    assert cache.embeddings(pipe, [a])[1] == 0 and cache.embeddings(pipe, [b])[1] == 1
    assert cache.encoded == 4


def test_the_schemas_least_corpus_is_the_one_the_density_needs():
    from api_schemas.job import MIN_CORPUS_IMAGES

    assert MIN_CORPUS_IMAGES == MIN_CORPUS
