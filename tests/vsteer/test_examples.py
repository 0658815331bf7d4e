"""Every document in examples/ runs: job documents in-process on the tiny SVD (shrunk to a few frames
and steps, their steering kept), the others through the schema of the resource they are for."""

import json
from pathlib import Path
from typing import Any

import pytest

from api_schemas import JobRequest
from workers.engine import run_job
from workers.images import ImageResolver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Job documents, and the steering operations each one shows in its manifest.
JOBS: dict[str, set[str]] = {
    "plain.json": set(),
    "variation.json": {"variation"},
    "morph.json": {"keyframes", "references", "variation"},
    "bidirectional.json": {"keyframes", "interpolation"},
    "long-video.json": set(),  # segments: the first one is a plain job; the chain is in `segments`
    "references.json": {"references"},
    "negative-image.json": {"negative_image"},
    "style.json": {"style"},
    "latent-direction.json": {"directions"},
    "text-direction.json": {"directions"},  # needs the model's text encoder: the tiny model has one
    "seed-sweep.json": {"sweep"},
    "video-edit.json": {"video", "directions"},  # videos/pan.mp4: vsteer.pictures.panning_clip(7, (128, 64), 24, 8)
}
# Documents for the service's other resources (run by their own tests against a server).
SERVICE_ONLY = {
    "anchor-set.json": "anchor",
    "anchored-job.json": "job citing an anchor set",
    "direction-fit.json": "direction fit (POST /v1/directions; tests/integration/test_direction_fits.py)",
}


def test_every_example_is_covered():
    names = {p.name for p in EXAMPLES.glob("*.json")}
    uncovered = names - set(JOBS) - set(SERVICE_ONLY) - _comparison_examples(names)
    assert not uncovered, f"examples no test runs: {sorted(uncovered)}"


def _comparison_examples(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith("compar")}


def shrunk(doc: dict[str, Any]) -> dict[str, Any]:
    """The document at test size: 4 frames of 64x64, 2 steps; everything else as written."""
    generation = {**doc.get("generation", {}), "num_frames": 4, "width": 64, "height": 64, "steps": 2}
    return {**doc, "generation": generation, "model": "tiny"}


@pytest.mark.parametrize("name", sorted(JOBS))
def test_example_job_runs_and_does_what_it_shows(name, registry, tmp_path):
    doc = json.loads((EXAMPLES / name).read_text())
    job = JobRequest.model_validate(shrunk(doc))
    outputs = run_job(job, tmp_path, registry=registry, images=ImageResolver(allow_paths=True, base_dir=EXAMPLES))
    assert outputs.files["video"].stat().st_size > 0
    steering = set(outputs.manifest["steering"])  # the operations that acted on the job
    assert steering == JOBS[name], outputs.manifest["steering"]
    if job.segments is not None:
        assert len(outputs.manifest["segments"]["segments"]) == job.segments.count


def test_the_anchor_examples_are_valid_documents():
    from api_schemas.anchors import AnchorCreate

    anchor = json.loads((EXAMPLES / "anchor-set.json").read_text())
    AnchorCreate.model_validate(anchor)
    JobRequest.model_validate(json.loads((EXAMPLES / "anchored-job.json").read_text()))


def test_the_direction_fit_example_is_a_valid_fit():
    from api_schemas.directions import DirectionFitRequest

    fit = DirectionFitRequest.model_validate(json.loads((EXAMPLES / "direction-fit.json").read_text()))
    assert fit.method == "text" and fit.model is None  # the default model: tiny and toy have a text encoder
