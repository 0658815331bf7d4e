"""Fixtures of the worker tests: a job on the tiny SVD planned up to its clips, to read what each
operation contributes."""

from typing import Any

import pytest

from api_schemas import JobRequest
from workers.engine import load_inputs
from workers.images import ImageResolver
from workers.plan import resolve_job
from workers.planning import PlannedJob, plan_job_clips

SIZE = {"width": 64, "height": 64, "num_frames": 5, "steps": 4}
EMBED_DIM = 32  # the tiny CLIP's projection size
LATENT = (4, 8, 8)  # the tiny model's latents at 64 x 64


@pytest.fixture
def planned(registry, image_paths):
    """`planned(**fields)`: a job on image 0 (fields override), planned through its operations."""

    def plan(**fields: Any) -> PlannedJob:
        doc: dict[str, Any] = {"seed": 5, "image": str(image_paths[0]), "generation": dict(SIZE)}
        doc.update(fields)
        doc = {k: v for k, v in doc.items() if v is not None}
        job_plan = resolve_job(JobRequest.model_validate(doc), registry.get("tiny"))
        images, _ = load_inputs(job_plan.job, ImageResolver(allow_paths=True))
        return plan_job_clips(registry.get("tiny").pipeline, job_plan, images)

    return plan
