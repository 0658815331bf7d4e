"""The comparison request: 2 to 8 models, each once, and a job that leaves the model to them."""

import pytest
from pydantic import ValidationError

from api_schemas.comparisons import ComparisonRequest

JOB = {"image": "asset:ast_0123", "generation": {"steps": 2}}


def refused(body: dict) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        ComparisonRequest.model_validate(body)
    error = caught.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), error["msg"]


def test_a_comparison_of_two_models_is_accepted():
    request = ComparisonRequest.model_validate({"models": ["svd", "svd-xt"], "job": JOB})
    assert request.models == ["svd", "svd-xt"] and request.job.model is None


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["svd"], "2 to 8 models, got 1"),
        ([f"m{i}" for i in range(9)], "2 to 8 models, got 9"),
        (["svd", "svd"], "each model once, got svd more than once"),
        (["svd", ""], "empty name"),
    ],
)
def test_models_are_two_to_eight_distinct_names(models: list[str], message: str):
    field, msg = refused({"models": models, "job": JOB})
    assert field == "models" and message in msg


def test_the_job_names_no_model_and_unknown_fields_are_refused():
    assert refused({"models": ["a", "b"], "job": {**JOB, "model": "a"}})[0] == "job"
    assert refused({"models": ["a", "b"], "job": JOB, "extra": 1})[0] == "extra"
    assert refused({"models": ["a", "b"], "job": {**JOB, "generation": {"width": 65}}})[0] == "job.generation.width"
