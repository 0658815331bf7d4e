"""Comparisons: the same job on several models, one child job per model, shown side by side.

`POST /v1/comparisons` takes `{"models": [...], "job": {...}}`. The service picks one seed for all
children (the job's own, or one chosen once), creates one child job per model on that model's queue
(`gpu.<model>`), and the comparison follows them. Each worker resolves the sizes and frame counts the
job leaves unset from its own model's defaults, so children of models that differ render at their
model's size; what each child resolved is in its row of the table. Once every child is terminal and
at least one succeeded, a CPU worker composes the side-by-side MP4 (clips aligned in time, each
labelled with its model name and padded to a common size), a PNG contact sheet and the table of each
child's audit figures and timings.
"""

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from api_schemas.job import JobRequest, Strict
from api_schemas.resources import Artifact, JobStatus, Problem, Progress, Resource

MIN_MODELS = 2
MAX_MODELS = 8


class ComparisonRequest(Strict):
    """What `POST /v1/comparisons` takes."""

    models: list[str] = Field(
        description=f"The models to run the job on, {MIN_MODELS} to {MAX_MODELS}, each once; one child job per model.",
    )
    job: JobRequest = Field(
        description="The job document every child runs, without `model` (the comparison names the models). "
        "A `sweep` is rendered by every child."
    )

    @field_validator("models")
    @classmethod
    def _distinct_models(cls, value: list[str]) -> list[str]:
        if not MIN_MODELS <= len(value) <= MAX_MODELS:
            raise ValueError(f"`models` must name {MIN_MODELS} to {MAX_MODELS} models, got {len(value)}")
        for name in value:
            if not name:
                raise ValueError("`models` must not hold an empty name")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"`models` must name each model once, got {', '.join(repeated)} more than once")
        return value

    @field_validator("job")
    @classmethod
    def _no_job_model(cls, value: JobRequest) -> JobRequest:
        if value.model is not None:
            raise ValueError("`job.model` must be left out of a comparison: `models` names the models")
        return value


class ComparisonChild(Resource):
    """One child job of a comparison, as the comparison sees it."""

    model: str = Field(description="The child's model.")
    job_id: str = Field(description="The child job's id: `GET /v1/jobs/{id}` for its whole resource.")
    status: JobStatus = Field(description="The child job's status.")
    progress: Progress | None = Field(None, description="The child's progress while it runs.")
    error: Problem | None = Field(None, description="Why the child failed, when it did.")


class ComparisonRow(Resource):
    """One child's line of the comparison table."""

    model: str
    job_id: str
    status: JobStatus
    num_frames: int | None = Field(None, description="Frames the child rendered (its model's default when unset).")
    width: int | None = Field(None, description="Width the child rendered.")
    height: int | None = Field(None, description="Height the child rendered.")
    fps: float | None = Field(None, description="Frame rate of the child's video.")
    flicker: float | None = Field(None, description="The audit's flicker (mean over clips for a sweep).")
    warp_error: float | None = Field(None, description="The audit's mean warp error (mean over clips for a sweep).")
    flagged_frames: list[int] = Field(
        default_factory=list, description="Frames the audit flagged (of every clip, for a sweep)."
    )
    timings: dict[str, float] = Field(default_factory=dict, description="The child's stage timings, in seconds.")
    error: Problem | None = Field(None, description="Why the child failed, when it did.")


class ComparisonResult(Resource):
    """What a finished comparison has."""

    video: Artifact = Field(description="The side-by-side MP4: one labelled column per succeeded child.")
    contact_sheet: Artifact = Field(
        description="A PNG: four moments of the side-by-side, first to last, top to bottom (a column per model)."
    )
    table: list[ComparisonRow] = Field(description="Every child's audit figures and timings, in `models` order.")


class ComparisonResource(Resource):
    """A comparison as the service answers it.

    `status`: `queued` while every child is queued, `running` while any child runs or the side-by-side
    is being made, `succeeded` once it is made (some children may have failed: `failed` names them),
    `failed` when every child failed or the composition did, `canceled` once a cancel has ended every
    child."""

    id: str = Field(description="`cmp_...`.")
    status: JobStatus
    created_at: datetime
    finished_at: datetime | None = None
    models: list[str]
    seed: int = Field(description="The one seed every child runs with.")
    request: ComparisonRequest = Field(description="The comparison as accepted, the job's seed resolved.")
    children: list[ComparisonChild] = Field(description="One child job per model, in `models` order.")
    failed: list[ComparisonChild] = Field(
        default_factory=list, description="The children that failed, with why (also in `children`)."
    )
    result: ComparisonResult | None = None
    error: Problem | None = Field(None, description="Why the comparison failed, when it did.")
    progress: dict[str, Any] | None = Field(
        None, description="`{children_terminal, children}` while under way; `stage: compose` once composing."
    )
