"""The job document: one steering job, the same through the CLI and through HTTP.

Every field carries bounds and a description; unknown fields are rejected. Fields left out
(``None``) take the model's defaults when the job is resolved, and the resolved document is what
the manifest records.
"""

import math
import re
from collections.abc import Callable
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api_schemas.refs import check_image_ref
from api_schemas.video import VideoEdit

MAX_SEED = 2**63 - 1
ANCHOR_ID = r"^anc_[A-Za-z0-9_-]{1,64}$"
_ANCHOR_CITATION = re.compile(r"^(anc_[A-Za-z0-9_-]{1,64})(?:@([1-9][0-9]{0,8}))?$")
SWEEP_TO = "sweep_to_matches_target"
IMAGE_OR_KEYFRAMES = "image_or_keyframes"


def _takes_floats(annotation: Any) -> tuple[bool, bool]:
    """Whether a field's type holds a float `(as a scalar, in a list or tuple)`, for a field that takes no
    strings (`int | float | str` takes strings: its own rule checks them)."""
    members = set(get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else {annotation}
    members = {get_args(m)[0] if get_origin(m) is Annotated else m for m in members}
    if str in members:
        return False, False
    scalar = float in members
    listed = any(get_origin(m) in (list, tuple) and float in get_args(m) for m in members)
    return scalar, listed


def _not_a_number(value: Any) -> bool:
    return isinstance(value, bool | str | bytes)


class Strict(BaseModel):
    """Base of every request model: unknown fields are an error, not a silent drop. Integer and boolean
    fields take only integers and booleans: `"5"`, `64.0` or `true` for a count, or `"yes"` or `1` for a
    flag, is an error naming the field, not a silently different job (integer types that are not `int`,
    numpy's, still convert). Number fields take numbers (an integer is a number): `"0.5"` or `true` is
    an error too."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_lax_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name or ""].annotation
        if annotation in (int, int | None) and isinstance(value, bool | str | bytes | float):
            raise PydanticCustomError(
                "int_type", "Input should be an integer, not {kind}", {"kind": type(value).__name__}
            )
        if annotation in (bool, bool | None) and not isinstance(value, bool):
            raise PydanticCustomError(
                "bool_type", "Input should be true or false, not {kind}", {"kind": type(value).__name__}
            )
        scalar, listed = _takes_floats(annotation)
        wrong = None
        if scalar and _not_a_number(value):
            wrong = value
        elif listed and isinstance(value, list | tuple):
            wrong = next((v for v in value if _not_a_number(v)), None)
        if wrong is not None:
            raise PydanticCustomError(
                "float_type", "Input should be a number, not {kind}", {"kind": type(wrong).__name__}
            )
        return value


ImageRef = Annotated[
    str,
    Field(
        min_length=1,
        max_length=16 * 1024 * 1024,
        description=(
            "An image: `asset:<id>` (uploaded with POST /v1/assets), a `data:image/...;base64,...` URI, "
            "or, in the CLI only, a local file path."
        ),
    ),
]

Window = Annotated[
    tuple[float, float],
    Field(description="A fraction window `[a, b]` with 0 <= a <= b <= 1."),
]


def rule_error(field: str, rule: str, message: str) -> PydanticCustomError:
    """A rule that spans fields, broken at `field` (a path inside the model that checks it): the
    service reports `field` (under the model's own path) and `rule` like any field's error."""
    return PydanticCustomError(rule, message, {"field": field})


def rule_field(path: str, context: dict[str, Any] | None) -> str:
    """The field an error names: `path` (where pydantic located it), extended by the field a
    `rule_error` names inside that model."""
    inside = (context or {}).get("field")
    if not (isinstance(inside, str) and inside):
        return path
    return f"{path}.{inside}" if path else inside


def _check_window(value: tuple[float, float] | None, field: str) -> None:
    if value is None:
        return
    a, b = value
    if not (0.0 <= a <= b <= 1.0):
        raise rule_error(field, "window", f"`{field}` must satisfy 0 <= a <= b <= 1, got [{a}, {b}]")


class GuidanceShape(StrEnum):
    linear = "linear"
    triangle = "triangle"
    constant = "constant"


class Interpolation(StrEnum):
    linear = "linear"
    slerp = "slerp"
    geodesic = "geodesic"


class KeyframeInterpolation(StrEnum):
    """How a keyframe morph moves between its keyframes: `Interpolation`'s paths, or `bidirectional`."""

    linear = "linear"
    slerp = "slerp"
    geodesic = "geodesic"
    bidirectional = "bidirectional"


BIDIRECTIONAL_KEYFRAMES = "bidirectional_two_keyframes"
# A job's own reference corpus for geodesic paths: the least a k-nearest-neighbour density says anything
# with (`steering.interpolate.MIN_CORPUS`), and the most a worker encodes for one job.
MIN_CORPUS_IMAGES = 64
MAX_CORPUS_IMAGES = 1024


class Guidance(Strict):
    """Classifier-free guidance scale per frame."""

    min: float = Field(1.0, ge=0.0, le=30.0, description="Scale at the ends of the ramp.")
    max: float = Field(3.0, ge=0.0, le=30.0, description="Scale at the peak of the ramp.")
    shape: GuidanceShape = Field(
        GuidanceShape.linear,
        description=(
            "`linear`: min at the first frame to max at the last (diffusers' ramp); "
            "`triangle`: min at both ends, max at the middle frame; `constant`: max on every frame."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise rule_error(
                "min", "min_at_most_max", f"`guidance.min` must be <= `guidance.max`, got {self.min} > {self.max}"
            )
        return self


class Generation(Strict):
    """SVD's own controls. `None` takes the model's default."""

    num_frames: int | None = Field(None, ge=2, le=128, description="Frames per clip (model default if unset).")
    width: int | None = Field(
        None, ge=64, le=2048, multiple_of=64, description="Frame width in pixels, a multiple of 64."
    )
    height: int | None = Field(
        None, ge=64, le=2048, multiple_of=64, description="Frame height in pixels, a multiple of 64."
    )
    steps: int = Field(25, ge=1, le=200, description="Denoising steps.")
    fps: int = Field(7, ge=1, le=60, description="Frame rate the model is conditioned on.")
    motion_bucket_id: int = Field(127, ge=0, le=1023, description="Amount of motion; higher moves more.")
    noise_aug_strength: float = Field(
        0.02, ge=0.0, le=1.0, description="Noise added to the conditioning image before encoding."
    )
    guidance: Guidance = Field(default_factory=Guidance)
    decode_chunk_size: int | None = Field(
        None, ge=1, le=128, description="Frames the VAE decodes at once (all frames if unset)."
    )


class Variation(Strict):
    """Slerp the initial noise toward a second seed's noise."""

    seed: int = Field(ge=0, le=MAX_SEED, description="Seed of the second noise.")
    strength: float = Field(ge=0.0, le=1.0, description="0 keeps the job's noise, 1 is the second seed's.")


class Keyframe(Strict):
    image: ImageRef
    at: float = Field(ge=0.0, le=1.0, description="Position in the clip, 0 = first frame, 1 = last.")

    _check_image = field_validator("image")(check_image_ref)


class Reference(Strict):
    image: ImageRef
    weight: float = Field(
        ge=0.0,
        le=10.0,
        description="Attention weight of this extra CLIP token relative to the main one (0 = ignored).",
    )

    _check_image = field_validator("image")(check_image_ref)


class Curve(StrEnum):
    linear = "linear"
    cosine = "cosine"


class Ramp(Strict):
    """A strength that changes over frames or over denoising steps."""

    from_: float = Field(alias="from", ge=-100.0, le=100.0, description="Value at the start.")
    to: float = Field(ge=-100.0, le=100.0, description="Value at the end.")
    over: Literal["frames", "steps"] = Field("frames", description="What the ramp runs over.")
    curve: Curve = Field(Curve.linear, description="Shape of the ramp.")

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


Strength = Annotated[
    float | Ramp,
    Field(description="A number, or a ramp `{from, to, over, curve}`."),
]


FLOAT32_MAX = 3.4028234663852886e38  # a direction is stored and applied in 32-bit floats
FLOAT32_TINY = 2.0**-149  # the smallest positive 32-bit float: anything smaller rounds to zero


def check_values(values: list[float], *, zero: bool = True) -> None:
    """Finite and within 32-bit floats' range, and (`zero`) not all zero once rounded to them: a zero
    direction moves nothing and cannot be normalised (a job's inline vector leaves that to the worker,
    which checks every source alike)."""
    if not all(math.isfinite(v) for v in values):
        raise rule_error("vector", "finite", "every value of a direction must be finite (no NaN or infinity)")
    if not all(abs(v) <= FLOAT32_MAX for v in values):
        raise rule_error("vector", "float32", "every value of a direction must fit a 32-bit float (at most 3.4e38)")
    if zero and not any(abs(v) >= FLOAT32_TINY for v in values):
        raise rule_error("vector", "not_zero", "a direction of all zeros (in 32-bit floats) moves nothing")


class DirectionSource(Strict):
    """Where a direction comes from: exactly one of `id`, `path`, `vector`, `text`.

    `text` (with `from_text`, the empty prompt when unset) is unCLIP's "text diff": d =
    normalize(E_text(text) − E_text(from_text)), E_text the CLIP text tower's projected, L2-normalised
    embedding, in the joint space the image embedding lives in; it needs a text encoder configured for
    the model and acts in the `embedding` space only."""

    id: str | None = Field(None, pattern=r"^dir_[A-Za-z0-9_-]{1,64}$", description="A stored direction.")
    path: str | None = Field(None, max_length=4096, description="A local safetensors file (CLI only).")
    vector: list[float] | None = Field(None, min_length=1, max_length=65536, description="An inline direction vector.")
    text: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="A prompt to move toward, in CLIP's joint text-image space (needs the model's text encoder).",
    )
    from_text: str | None = Field(
        None,
        max_length=1000,
        description='The prompt to move away from, with `text`; unset means "" (the empty prompt).',
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k in ("id", "path", "vector", "text") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a direction `source` needs exactly one of id, path, vector, text; got {given or 'none'}")
        if self.from_text is not None and self.text is None:
            raise rule_error("from_text", "from_text_needs_text", "`from_text` is the other end of a `text` direction")
        if self.vector is not None:
            check_values(self.vector, zero=False)
        return self


class Direction(Strict):
    """z' = z + alpha * d, in the CLIP embedding space or on the latents."""

    source: DirectionSource
    space: Literal["embedding", "latent"] = Field("embedding", description="Where the direction acts.")
    strength: Strength = 1.0
    frames: Window | None = Field(None, description="Fraction window of frames it acts on (all if unset).")
    steps: Window | None = Field(None, description="Fraction window of denoising steps it acts on (all if unset).")
    preserve: list[DirectionSource] = Field(
        default_factory=list, max_length=16, description="Directions projected out of this one first."
    )

    @model_validator(mode="after")
    def _windows(self) -> Self:
        _check_window(self.frames, "frames")
        _check_window(self.steps, "steps")
        if self.space == "latent":
            texts = [("source", self.source)] + [(f"preserve[{k}]", p) for k, p in enumerate(self.preserve)]
            for name, source in texts:
                if source.text is not None:
                    # A text difference lives in CLIP's joint space, which only the image embedding shares.
                    raise rule_error(
                        f"{name}.text",
                        "text_needs_embedding_space",
                        "a `text` direction acts in the CLIP embedding space: it needs `space: embedding`",
                    )
        if self.space == "embedding":
            # The conditioning is fixed for the whole denoising run: it has no steps to vary over.
            if self.steps is not None:
                raise rule_error(
                    "steps",
                    "needs_latent_space",
                    "`steps` needs `space: latent`; an embedding direction acts on every step",
                )
            if isinstance(self.strength, Ramp) and self.strength.over == "steps":
                raise rule_error(
                    "strength.over",
                    "needs_latent_space",
                    "`strength.over: steps` needs `space: latent`; use `over: frames`",
                )
        return self


class Style(Strict):
    """AdaIN of the latents toward a reference image's latent statistics."""

    image: ImageRef
    strength: float = Field(ge=0.0, le=1.0, description="Blend between the latents (0) and AdaIN's output (1).")
    steps: Window = Field((0.0, 1.0), description="Fraction window of denoising steps it acts in.")
    over_frames: bool = Field(False, description="Take statistics over frames too, not per frame.")

    _check_image = field_validator("image")(check_image_ref)

    @model_validator(mode="after")
    def _window(self) -> Self:
        _check_window(self.steps, "steps")
        return self


class SweepTarget(StrEnum):
    seed = "seed"
    image = "image"
    direction = "direction"
    motion_bucket_id = "motion_bucket_id"


class Sweep(Strict):
    """Render `count` clips along a path from the job's value to `to`."""

    target: SweepTarget
    to: int | float | str = Field(
        description="End of the path: a seed, an image, a direction strength or a motion bucket."
    )
    count: int = Field(ge=1, le=16, description="Clips along the path, both ends included.")
    interpolation: Interpolation = Interpolation.slerp
    direction: int = Field(0, ge=0, le=15, description="With target `direction`: index into `directions`.")
    batch_size: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Clips per UNet batch. Unset: all of them on the CPU, as many as fit in free memory on a GPU "
        "(the manifest records the choice).",
    )

    @model_validator(mode="after")
    def _to_matches_target(self) -> Self:
        t, to = self.target, self.to
        if t in (SweepTarget.seed, SweepTarget.motion_bucket_id):
            if isinstance(to, bool) or not isinstance(to, int):
                raise rule_error("to", SWEEP_TO, f"`sweep.to` must be an integer for target `{t}`, got {to!r}")
            high = MAX_SEED if t is SweepTarget.seed else 1023
            if not 0 <= to <= high:
                raise rule_error("to", SWEEP_TO, f"`sweep.to` must be between 0 and {high} for target `{t}`, got {to}")
        elif t is SweepTarget.image:
            if not isinstance(to, str):
                raise rule_error(
                    "to", SWEEP_TO, f"`sweep.to` must be an image reference for target `image`, got {to!r}"
                )
            try:
                check_image_ref(to)
            except ValueError as exc:
                raise rule_error("to", SWEEP_TO, str(exc)) from None
        elif isinstance(to, str) or not -100.0 <= float(to) <= 100.0:
            raise rule_error(
                "to", SWEEP_TO, f"`sweep.to` must be a strength between -100 and 100 for target `direction`, got {to!r}"
            )
        return self


class SegmentBlend(StrEnum):
    linear = "linear"
    cosine = "cosine"


class Segments(Strict):
    """A long video: `count` clips of `num_frames` chained, each conditioned on the frame of the one before
    that its own first frame stands on (frame num_frames − overlap; the last without overlap), sharing
    `overlap` latent frames blended with `blend` weights."""

    count: int = Field(ge=1, le=16, description="Segments (clips of `num_frames` each) in the video.")
    overlap: int = Field(
        0,
        ge=0,
        le=127,
        description=(
            "Latent frames a segment shares with the one before: its first `overlap` frames start from the previous "
            "segment's last `overlap` clean latents re-noised with its own seeded noise, and are blended with them "
            "after denoising. Less than `num_frames` (422, rule `segments_overlap_below_frames`). The video has "
            "count * num_frames - (count - 1) * overlap frames."
        ),
    )
    blend: SegmentBlend = Field(
        SegmentBlend.linear,
        description=(
            "Weight of the previous segment on overlap frame j (0-based) of `overlap` n, with u = (j + 1) / (n + 1): "
            "`linear` 1 - u, `cosine` (1 + cos(pi * u)) / 2; the new segment's weight is 1 minus that."
        ),
    )
    images: list[ImageRef] | None = Field(
        None,
        min_length=1,
        max_length=15,
        description=(
            "A storyboard: one target image per segment after the first (count - 1 of them, else a 422 with rule "
            "`segments_images_per_segment`); segment k + 1 morphs from the frame of segment k it starts on to "
            "images[k] as keyframes at 0 and 1, with the job's `interpolation`."
        ),
    )

    @field_validator("images")
    @classmethod
    def _check_images(cls, images: list[str] | None) -> list[str] | None:
        return None if images is None else [check_image_ref(ref) or ref for ref in images]


class Output(Strict):
    format: Literal["mp4"] = Field("mp4", description="Container of the video (H.264 in MP4).")
    fps: int | None = Field(None, ge=1, le=60, description="Playback frame rate (generation.fps if unset).")
    crf: int = Field(18, ge=0, le=51, description="H.264 constant rate factor; lower is better quality.")
    preview: Literal["gif", "webp", "none"] = Field("gif", description="Animated preview format.")
    raw: bool = Field(False, description="Also store frames.npy (float32, F x H x W x 3 in [0, 1]).")


class WebhookEvent(StrEnum):
    """What a webhook is sent for; each name is the message's type after `job.`, but `completed`, the
    older name of `succeeded`, which is kept and means the same."""

    started = "started"
    progress = "progress"
    succeeded = "succeeded"
    completed = "completed"
    failed = "failed"
    canceled = "canceled"


class Webhook(Strict):
    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://", description="Receiver URL.")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: [WebhookEvent.completed, WebhookEvent.failed, WebhookEvent.canceled],
        min_length=1,
        max_length=6,
        description=(
            "What sends a webhook, by the message's type: `succeeded` (`job.succeeded`; `completed` is the same), "
            "`failed`, `canceled` (the default: the three terminal states); `started` (`job.started`, when a worker "
            "starts the job, once per run); `progress` (`job.progress` when each stage starts and at each quarter "
            "of the denoising steps, at most 9 per run)."
        ),
    )


class AnchorCitation(Strict):
    """The anchor set a job cites. Sent as `"anc_...@3"` (or without `@version`: the latest), or as this
    object; the service fills in `version` and `sha256` when it merges the anchor into the job, so a
    citation with `sha256` is a record of a merge already done (a replayed manifest) and is kept as is."""

    id: str = Field(pattern=ANCHOR_ID, description="Anchor set id, `anc_...`.")
    version: int | None = Field(None, ge=1, description="Version of the anchor set (the latest if unset).")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the version's fields, set by the service."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _ANCHOR_CITATION.fullmatch(value)
        if match is None:
            raise PydanticCustomError(
                "anchor_citation",
                "`anchor` must be `anc_<id>` or `anc_<id>@<version>` (version from 1), got {value}",
                {"value": repr(value[:80])},
            )
        anchor_id, version = match.groups()
        return {"id": anchor_id, "version": None if version is None else int(version)}

    def merged(self) -> bool:
        """Whether the anchor's fields are already in the document (the service resolved this citation)."""
        return self.version is not None and self.sha256 is not None

    def __str__(self) -> str:
        return self.id if self.version is None else f"{self.id}@{self.version}"


Metadata = dict[Annotated[str, Field(max_length=64)], str | int | float | bool | None]


# What `JobRequest._conditioning` checks first, said in the JSON schema: one of them given (not null),
# never both.
_GIVEN_IMAGE = {"required": ["image"], "properties": {"image": {"type": "string"}}}
_GIVEN_KEYFRAMES = {"required": ["keyframes"], "properties": {"keyframes": {"type": "array"}}}
# A `video` edit without `image` is conditioned on the clip's first frame.
_GIVEN_VIDEO = {"required": ["video"], "properties": {"video": {"type": "object"}}}
IMAGE_OR_KEYFRAMES_SCHEMA: dict[str, Any] = {
    "anyOf": [_GIVEN_IMAGE, _GIVEN_KEYFRAMES, _GIVEN_VIDEO],
    "not": {"allOf": [_GIVEN_IMAGE, _GIVEN_KEYFRAMES]},
}


class JobRequest(Strict):
    """A steering job: what to generate and how to steer it."""

    model_config = ConfigDict(json_schema_extra=IMAGE_OR_KEYFRAMES_SCHEMA)

    model: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Registered model name (the service's default if unset).",
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed; chosen and recorded if unset.")
    image: ImageRef | None = Field(
        None,
        description="Conditioning image. A job has exactly one of `image` and `keyframes`: both, or neither, "
        "is a 422 with rule `image_or_keyframes`.",
    )
    generation: Generation = Field(default_factory=Generation)
    variation: Variation | None = None
    keyframes: list[Keyframe] | None = Field(
        None,
        min_length=2,
        max_length=64,
        description="Images to morph between, `at` ascending; not with `image` (422, `image_or_keyframes`).",
    )
    interpolation: KeyframeInterpolation = Field(
        KeyframeInterpolation.slerp,
        description=(
            "How keyframes are interpolated: `linear`, `slerp` or `geodesic` condition each frame on the keyframes "
            "interpolated at its position; `bidirectional` (exactly two keyframes, at 0 and 1, else a 422 with "
            "rule `bidirectional_two_keyframes`) denoises each step forward conditioned on the first keyframe and "
            "time-flipped conditioned on the last, with both end frames held to the keyframes: twice the UNet calls."
        ),
    )
    corpus: list[ImageRef] | None = Field(
        None,
        min_length=MIN_CORPUS_IMAGES,
        max_length=MAX_CORPUS_IMAGES,
        description=(
            f"The reference corpus a `geodesic` path keeps to: {MIN_CORPUS_IMAGES} or more pictures like the ones "
            "morphed (the tenant's image assets, typically), in place of the model's configured corpus; each is "
            "encoded once per loaded model and kept, so later jobs citing it encode none again. Only with a "
            "`geodesic` keyframe morph or image sweep (else a 422 with rule `corpus_needs_geodesic`)."
        ),
    )
    references: list[Reference] = Field(default_factory=list, max_length=8)
    negative_image: ImageRef | None = Field(
        None, description="Conditioning of the unconditional branch of guidance (zeros if unset)."
    )
    directions: list[Direction] = Field(default_factory=list, max_length=16)
    style: Style | None = None
    sweep: Sweep | None = None
    video: VideoEdit | None = Field(
        None,
        description="A real clip to edit (SDEdit): conditioned on `image` when given, else on the clip's first frame.",
    )
    segments: Segments | None = Field(
        None,
        description=(
            "A long video chained from `count` clips (not with `sweep` or `video`: rule `segments_alone`); "
            "the first is the job as written."
        ),
    )
    output: Output = Field(default_factory=Output)
    webhook: Webhook | None = None
    metadata: Metadata = Field(default_factory=dict, max_length=64)
    anchor: AnchorCitation | None = Field(
        None,
        description=(
            "An anchor set, `anc_...@<version>` (the latest without `@`): its fields are the base of the job's, "
            "objects merged field by field and lists replaced; the accepted job shows the merged document and "
            "the citation with its version and SHA-256."
        ),
    )

    _check_image = field_validator("image", "negative_image")(check_image_ref)

    @field_validator("corpus")
    @classmethod
    def _check_corpus(cls, refs: list[str] | None) -> list[str] | None:
        return None if refs is None else [check_image_ref(ref) or ref for ref in refs]

    @model_validator(mode="after")
    def _conditioning(self) -> Self:
        if self.image is None and self.keyframes is None and self.video is None:
            raise rule_error("image", IMAGE_OR_KEYFRAMES, "a job needs `image` or `keyframes` (or a `video` to edit)")
        if self.image is not None and self.keyframes is not None:
            raise rule_error("keyframes", IMAGE_OR_KEYFRAMES, "give either `image` or `keyframes`, not both")
        if self.keyframes is not None:
            ats = [k.at for k in self.keyframes]
            for i in range(1, len(ats)):
                if ats[i] <= ats[i - 1]:
                    raise rule_error(
                        f"keyframes[{i}].at",
                        "keyframes_ascending",
                        f"`keyframes[{i}].at` must be greater than `keyframes[{i - 1}].at` "
                        f"(ascending), got {ats[i]} after {ats[i - 1]}",
                    )
        if self.interpolation is KeyframeInterpolation.bidirectional:
            self._check_bidirectional()
        if self.corpus is not None and not self.has_geodesic_path():
            raise rule_error(
                "corpus",
                "corpus_needs_geodesic",
                "`corpus` is what a `geodesic` path keeps to: give it with `keyframes` and `interpolation` "
                "`geodesic`, or a `sweep` of `target` `image` with `interpolation` `geodesic`",
            )
        if self.segments is not None:
            self._check_segments(self.segments)
        if self.sweep is not None and not self._awaits_anchor():
            if self.sweep.target is SweepTarget.direction and self.sweep.direction >= len(self.directions):
                raise rule_error(
                    "sweep.direction",
                    "index_into_directions",
                    f"`sweep.direction` must index `directions` (length {len(self.directions)}), "
                    f"got {self.sweep.direction}",
                )
            if self.sweep.target is SweepTarget.seed and self.variation is not None:
                raise rule_error(
                    "variation",
                    "sweep_seed_without_variation",
                    "`sweep.target` `seed` moves the noise itself: leave out `variation`",
                )
            if self.sweep.target is SweepTarget.image and self.keyframes is not None:
                raise rule_error(
                    "keyframes", IMAGE_OR_KEYFRAMES, "`sweep.target` `image` needs `image`, not `keyframes`"
                )
        return self

    def _check_segments(self, segments: "Segments") -> None:
        """A long video chains plain clips of the job's size: its own sweep or edited clip would be a
        second axis the chain does not have."""
        for other in ("sweep", "video"):
            if getattr(self, other) is not None:
                raise rule_error(other, "segments_alone", f"`segments` chains clips of one job: leave out `{other}`")
        frames = self.generation.num_frames
        if frames is not None and segments.overlap >= frames:
            raise rule_error(
                "segments.overlap",
                "segments_overlap_below_frames",
                f"`segments.overlap` must be less than `generation.num_frames` ({frames}), got {segments.overlap}",
            )
        if segments.images is not None and len(segments.images) != segments.count - 1:
            raise rule_error(
                "segments.images",
                "segments_images_per_segment",
                f"`segments.images` needs one image per segment after the first ({segments.count - 1}), "
                f"got {len(segments.images)}",
            )

    def _check_bidirectional(self) -> None:
        """Bidirectional sampling meets two ends: exactly two keyframes, the first at 0 and the last at 1."""
        rule = f"`interpolation` `{KeyframeInterpolation.bidirectional}` needs exactly two keyframes, at 0 and 1"
        if self.keyframes is None:
            raise rule_error("interpolation", BIDIRECTIONAL_KEYFRAMES, f"{rule}; the job has no `keyframes`")
        if len(self.keyframes) != 2:
            raise rule_error("keyframes", BIDIRECTIONAL_KEYFRAMES, f"{rule}; got {len(self.keyframes)} keyframes")
        for i, at in enumerate((0.0, 1.0)):
            if self.keyframes[i].at != at:
                raise rule_error(
                    f"keyframes[{i}].at",
                    BIDIRECTIONAL_KEYFRAMES,
                    f"{rule}; got {self.keyframes[i].at} for keyframe {i}",
                )

    def has_geodesic_path(self) -> bool:
        """Whether the job interpolates embeddings along a `geodesic` (a keyframe morph or an image sweep)."""
        if self.keyframes is not None and self.interpolation is KeyframeInterpolation.geodesic:
            return True
        sweep = self.sweep
        return sweep is not None and sweep.target is SweepTarget.image and sweep.interpolation is Interpolation.geodesic

    def _awaits_anchor(self) -> bool:
        """Whether the job cites an anchor set not merged yet: rules between its own fields and fields an
        anchor may hold (`directions`, `variation`) wait for the merged document, which is checked again."""
        return self.anchor is not None and not self.anchor.merged()

    def image_refs(self) -> list[tuple[str, str]]:
        """Every image the job reads as (field path, reference), in a stable order: the one list of
        the document's image roles, which the service's asset checks, the CLI's path resolution and
        the worker's loader all read."""
        refs: list[tuple[str, str]] = []
        if self.image is not None:
            refs.append(("image", self.image))
        refs += [(f"keyframes[{i}].image", k.image) for i, k in enumerate(self.keyframes or [])]
        refs += [(f"references[{i}].image", r.image) for i, r in enumerate(self.references)]
        refs += [(f"corpus[{i}]", ref) for i, ref in enumerate(self.corpus or [])]
        if self.negative_image is not None:
            refs.append(("negative_image", self.negative_image))
        if self.style is not None:
            refs.append(("style.image", self.style.image))
        if self.sweep is not None and self.sweep.target is SweepTarget.image and isinstance(self.sweep.to, str):
            refs.append(("sweep.to", self.sweep.to))
        if self.segments is not None:
            refs += [(f"segments.images[{i}]", ref) for i, ref in enumerate(self.segments.images or [])]
        return refs

    def map_image_refs(self, fn: Callable[[str], str]) -> "JobRequest":
        """A copy with every image reference replaced by `fn(ref)`."""
        doc = self.dump()
        for path, ref in self.image_refs():
            set_field(doc, path, fn(ref))
        return JobRequest.model_validate(doc)

    def dump(self) -> dict[str, Any]:
        """The document as JSON-ready data, with field aliases (`from`)."""
        return self.model_dump(mode="json", by_alias=True)


_PATH_PART = re.compile(r"([A-Za-z_]+)(?:\[(\d+)\])?")


def set_field(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set the field at `path` (`style.image`, `keyframes[1].image`) of a dumped document."""
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        name, index = _PATH_PART.fullmatch(part).groups()  # type: ignore[union-attr]
        node = node[name] if index is None else node[name][int(index)]
    name, index = _PATH_PART.fullmatch(last).groups()  # type: ignore[union-attr]
    if index is None:
        node[name] = value
    else:
        node[name][int(index)] = value
