"""What the service answers: the job resource, its result, assets, models and problem details.

These are response models: they describe every field for the OpenAPI document and ignore unknown
fields when a client parses them, so that adding a field later does not break older clients.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api_schemas.job import JobRequest


class Resource(BaseModel):
    """Base of every response model: lenient on input so clients survive additions."""

    model_config = ConfigDict(extra="ignore")


class JobStatus(StrEnum):
    """Where a job is in its life: queued → running → succeeded | failed | canceled."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    def is_terminal(self) -> bool:
        """A terminal job never changes again."""
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


# Each stage of a job run and the span of the whole job's percent it covers, in the order a worker runs
# them: reading the images and encoding the conditioning are quick, denoising is most of the time,
# decoding, the audit and video encoding, and the uploads are the rest. A stage's steps move the
# percent evenly across its span, so the percent never goes back while the stages run in order.
STAGE_SPANS: dict[str, tuple[float, float]] = {
    "load": (0.0, 2.0),
    "encode": (2.0, 5.0),
    "denoise": (5.0, 85.0),
    "decode": (85.0, 90.0),
    "video": (90.0, 97.0),
    "uploading": (97.0, 100.0),
}


def job_percent(stage: str, fraction: float) -> float | None:
    """The whole job's percent at `fraction` of `stage` (`STAGE_SPANS`); None for a stage not listed."""
    span = STAGE_SPANS.get(stage)
    if span is None:
        return None
    start, end = span
    return round(start + (end - start) * fraction, 2)


class Progress(Resource):
    """How far the running stage, and the whole job, have got."""

    stage: str = Field(
        description="What the worker is doing: `load`, `encode`, `denoise`, `decode`, `video` (audit and "
        "encoding) or `uploading`."
    )
    step: int = Field(ge=0, description="Steps done in this stage.")
    total: int = Field(ge=0, description="Steps in this stage (0 when unknown).")
    fraction: float = Field(ge=0.0, le=1.0, description="`step / total` (0 when the total is unknown).")
    percent: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="How far the whole job has got, 0 to 100, never going back during a run: each stage covers "
        "a fixed span (load 0-2, encode 2-5, denoise 5-85, decode 85-90, video 90-97, uploading 97-100) "
        "that its steps cross evenly. Null for a stage outside that list.",
    )

    @classmethod
    def of(cls, stage: str, step: int, total: int) -> "Progress":
        """The progress of `step` of `total` steps of `stage`, with its fraction and the job's percent."""
        fraction = min(1.0, step / total) if total > 0 else 0.0
        return cls(stage=stage, step=step, total=total, fraction=fraction, percent=job_percent(stage, fraction))


class LivePreview(Resource):
    """What a running job's denoised estimate looks like: the latest of its live previews."""

    step: int = Field(ge=1, description="Denoising steps done (over every batch of clips) when it was made.")
    total: int = Field(ge=1, description="Denoising steps in the whole job.")
    image: str = Field(
        description="A JPEG strip of a few frames of the job's first clip, side by side, at most 256 pixels "
        "wide, as a `data:image/jpeg;base64,…` URI. Colours come from a per-model linear map of the latents, "
        "so they are close to, not equal to, what the decoder will make."
    )


class Artifact(Resource):
    """One stored file of a result."""

    url: str = Field(description="Presigned GET URL; it expires, fetch the job again for a fresh one.")
    content_type: str = Field(description="Media type, e.g. `video/mp4`, `image/png`, `application/json`.")
    bytes: int = Field(ge=0, description="Size in bytes.")
    sha256: str | None = Field(None, description="Hex SHA-256 of the content, when known.")
    expires_at: datetime | None = Field(
        None, description="When `url` stops working (UTC); fetch the job again for a fresh URL."
    )


class JobResult(Resource):
    """Everything a finished job produced."""

    video: Artifact | None = Field(None, description="The video (H.264 in MP4); for a sweep, the side-by-side video.")
    poster: Artifact | None = Field(None, description="A still frame (PNG).")
    preview: Artifact | None = Field(None, description="An animated preview (GIF or WebP), if requested.")
    manifest: Artifact | None = Field(
        None, description="`manifest.json`: request, resolved defaults, seeds, model, versions, timings."
    )
    frames: Artifact | None = Field(None, description="`frames.npy` (float32, F x H x W x 3), if `output.raw`.")
    clips: list[Artifact] = Field(default_factory=list, description="For a sweep: one video per clip, in order.")
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="Timings (seconds) and quality figures (flicker, warp error, ...)."
    )


class FieldError(Resource):
    """One rule that one field broke."""

    field: str = Field(description="Path of the field in the document, e.g. `keyframes[1].image`.")
    rule: str = Field(description="Name of the rule, e.g. `multiple_of`, `extra_forbidden`, `unknown_asset`.")
    message: str = Field(description="What is wrong, in words.")


class Problem(Resource):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    type: str = Field("about:blank", description="URI reference naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(ge=100, le=599, description="The HTTP status code.")
    detail: str | None = Field(None, description="What went wrong in this occurrence.")
    instance: str | None = Field(None, description="The request path or job that the problem concerns.")
    field: str | None = Field(None, description="The offending field, for errors about one field.")
    errors: list[FieldError] = Field(default_factory=list, description="Every rule broken, for validation errors.")


class JobUrls(Resource):
    """Where the job can be reached, as absolute URLs under the API's public base URL."""

    get: str = Field(description="The job resource (`GET`); `DELETE` removes the job.")
    cancel: str = Field(description="Cancel the job (`POST`).")
    events: str = Field(description="The job's server-sent events (`GET`).")
    web: str = Field(
        description="The playground page showing the job, `<base>/playground#job=<id>` (once given a key)."
    )


class JobResource(Resource):
    """A steering job as the service knows it."""

    id: str = Field(description="Job id, `job_...`.")
    status: JobStatus = Field(description="Where the job is in its life.")
    progress: Progress | None = Field(None, description="Progress of the running stage (null before it starts).")
    created_at: datetime = Field(description="When the job was accepted (UTC).")
    started_at: datetime | None = Field(None, description="When a worker started it (UTC).")
    finished_at: datetime | None = Field(None, description="When it reached a terminal status (UTC).")
    model: str = Field(description="The model that runs it.")
    request: JobRequest = Field(description="The job document as accepted, with the defaults the service resolves.")
    result: JobResult | None = Field(None, description="What it produced, once `succeeded`.")
    error: Problem | None = Field(None, description="Why it failed, once `failed`.")
    queue_position: int | None = Field(
        None,
        ge=0,
        description="While `queued`: how many jobs its model's workers take before it (0 = next). Null "
        "otherwise, and while its task is not in the queue (delivered to a worker that has not started it).",
    )
    urls: JobUrls | None = Field(None, description="Where the job can be reached (null where no base URL is known).")
    preview: LivePreview | None = Field(
        None,
        description="While `running`: the latest live preview of the denoising (each one is also sent as a "
        "`preview` server-sent event). Null before the first one and once the job has finished.",
    )


class JobList(Resource):
    """One page of the caller's jobs, newest first."""

    items: list[JobResource] = Field(description="Jobs on this page.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


class AssetKind(StrEnum):
    image = "image"
    video = "video"


class Asset(Resource):
    """An uploaded image or video; a job refers to it as `asset:<id>`."""

    id: str = Field(description="Asset id, `ast_...`.")
    kind: AssetKind = Field(description="`image` or `video`, from the content (not the declared type).")
    content_type: str = Field(description="Media type sniffed from the content.")
    sha256: str = Field(description="Hex SHA-256 of the content.")
    bytes: int = Field(ge=0, description="Size in bytes.")
    width: int | None = Field(None, ge=1, description="Width in pixels (images and videos; null where not probed).")
    height: int | None = Field(None, ge=1, description="Height in pixels (images and videos; null where not probed).")
    frames: int | None = Field(None, ge=1, description="Frame count (videos, when probed).")
    duration: float | None = Field(None, ge=0, description="Length in seconds (videos, when probed).")
    fps: float | None = Field(None, ge=0, description="Average frame rate (videos, when probed).")
    codec: str | None = Field(None, max_length=64, description="Codec of the video stream (videos, when probed).")
    created_at: datetime = Field(description="When it was uploaded (UTC).")


class AssetList(Resource):
    """One page of the caller's assets, newest first."""

    items: list[Asset] = Field(description="Assets on this page.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


class ModelDimensions(Resource):
    """The widths a model's directions must have."""

    embedding: int = Field(ge=1, description="Width of the CLIP image embedding (1024 for SVD and SVD-XT).")
    latent_channels: int = Field(ge=1, description="Channels of the latents (4 for SVD).")


class ModelInfo(Resource):
    """A model the service accepts jobs for."""

    name: str = Field(description="Name to use as the job's `model`.")
    default: bool = Field(description="Whether a job without `model` runs on it.")
    queue: str = Field(description="Worker queue its jobs go to, `gpu.<name>`.")
    warm_workers: list[str] = Field(
        default_factory=list, description="Workers that reported it loaded within the last minute."
    )
    dimensions: ModelDimensions | None = Field(
        None, description="The widths its directions must have (null when not configured for this model)."
    )
    text_encoder: bool = Field(
        False, description="Whether it has a CLIP text encoder, so that jobs may use `text` direction sources."
    )


class ModelList(Resource):
    items: list[ModelInfo] = Field(description="Registered models.")


class Health(Resource):
    status: Literal["ok", "unavailable"] = Field(description="`ok` when the checks pass.")
    checks: dict[str, str] = Field(default_factory=dict, description="Each dependency and its state.")
