"""Problem details of failed jobs: one builder per kind, each typed under the contract's base URL."""

import pytest

from api_schemas.problems import PROBLEM_BASE, ProblemType
from workers import errors
from workers.errors import (
    JobInputError,
    JobTimeLimitExceeded,
    JobTooLarge,
    ModelUnavailableError,
    StorageUnavailable,
)

JOB = "job_0123456789abcdef0123456789ab"


@pytest.mark.parametrize(
    ("problem", "kind", "status", "field"),
    [
        (
            errors.input_problem(JOB, JobInputError("keyframes[1].image", "unknown asset")),
            "invalid-input",
            422,
            "keyframes[1].image",
        ),
        (
            errors.too_large_problem(JOB, JobTooLarge("generation.width", "lower it")),
            "out-of-memory",
            507,
            "generation.width",
        ),
        (errors.model_problem(JOB, ModelUnavailableError("svd", "no weights")), "model-unavailable", 503, "model"),
        (errors.poison_problem(JOB, 3), "worker-lost", 500, None),
        (errors.storage_problem(JOB, StorageUnavailable("down")), "storage-unavailable", 503, None),
        (errors.time_limit_problem(JOB, JobTimeLimitExceeded(60, 61.2)), "time-limit", 504, None),
        (errors.internal_problem(JOB, RuntimeError("boom")), "internal-error", 500, None),
    ],
)
def test_each_failure_has_its_kind_status_and_field(problem, kind, status, field) -> None:
    assert problem.type == PROBLEM_BASE + kind == ProblemType(kind).uri
    assert (problem.status, problem.field, problem.instance) == (status, field, f"/v1/jobs/{JOB}")


def test_input_problem_names_the_field_in_its_detail() -> None:
    problem = errors.input_problem(JOB, JobInputError("style.image", "not an image"))
    assert problem.detail == "`style.image`: not an image"


def test_out_of_memory_says_what_to_lower() -> None:
    request = {"generation": {"width": 1024, "height": 576, "num_frames": 25}, "sweep": {"count": 4}}
    detail = errors.out_of_memory_problem(JOB, request, RuntimeError("CUDA out of memory\nmore")).detail
    assert "1024x576 with 25 frames (CUDA out of memory)" in detail
    assert "sweep.batch_size" in detail
    assert "sweep.batch_size" not in (errors.out_of_memory_problem(JOB, {}, RuntimeError("x")).detail or "")
    assert "defaultxdefault with default frames" in (
        errors.out_of_memory_problem(JOB, {}, RuntimeError("x")).detail or ""
    )


def test_time_limit_says_the_limit_and_what_to_lower() -> None:
    detail = errors.time_limit_problem(JOB, JobTimeLimitExceeded(3600, 3601.4)).detail or ""
    assert "after 3601 s, past this worker's time limit of 3600 s" in detail
    assert "`generation.steps`" in detail
