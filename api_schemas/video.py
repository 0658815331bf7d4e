"""`video`: edit a real clip (SDEdit on SVD) instead of generating from noise.

The clip's frames are VAE-encoded, re-noised to the sigma where `strength` of the schedule remains
(denoising starts at step round((1 − strength) · steps)) and denoised with every steering operation
of the job. The limits a video must meet are here too, so the service (at upload and at submit) and
the workers (when they read it) apply the same rules.
"""

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api_schemas.refs import ASSET_ID, RefKind, ref_kind

VIDEO_DATA_URI = re.compile(r"^data:video/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)

# What a worker reads of a video; the service refuses uploads and inline clips outside these.
MAX_VIDEO_SECONDS = 600.0
MAX_VIDEO_FRAMES = 3600
MAX_VIDEO_PIXELS = 4096 * 4096
MIN_VIDEO_SIDE = 8
MAX_VIDEO_START_S = 3600.0
# Frames a job on a built-in model renders when it leaves `num_frames` unset (the models' own), so
# the service can tell at submit whether a clip is long enough.
BUILTIN_NUM_FRAMES = {"svd": 14, "svd-xt": 25, "tiny": 6, "toy": 8}


class VideoFit(StrEnum):
    crop = "crop"
    pad = "pad"
    stretch = "stretch"


class VideoNoise(StrEnum):
    random = "random"
    inverted = "inverted"


class VideoEdit(BaseModel):
    """A real clip to edit: read `num_frames` frames at the job's `fps` from `start`, fit them to the job's
    size, encode them, re-noise them to where `strength` of the schedule remains, and denoise."""

    # The job document's rules (`api_schemas.job.Strict`): unknown fields are errors, and a number is a
    # number (strict: `"0.5"` or `true` is refused, an integer is taken).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: str = Field(
        strict=True,
        min_length=1,
        max_length=256 * 1024 * 1024,
        description=(
            "The clip: `asset:<id>` (a video uploaded with POST /v1/assets), a `data:video/...;base64,...` URI "
            "(MP4 or WebM), or, in the CLI only, a local file path."
        ),
    )
    strength: float = Field(
        strict=True,
        ge=0.0,
        le=1.0,
        description=(
            "Fraction of the denoising schedule re-run: denoising starts at step round((1 - strength) * steps). "
            "0 returns the clip's own VAE round trip (no denoising step), 1 denoises from pure noise."
        ),
    )
    start: float = Field(
        0.0, strict=True, ge=0.0, le=MAX_VIDEO_START_S, description="Time in seconds where the clip is read from."
    )
    fit: VideoFit = Field(
        VideoFit.crop,
        description=(
            "How frames meet the job's width and height: `crop` scales to cover and cuts the centre, `pad` "
            "scales to fit inside and pads with black, `stretch` scales each side on its own."
        ),
    )
    noise: VideoNoise = Field(
        VideoNoise.random,
        description=(
            "How the clean latents reach the starting sigma: `random` adds the job seed's noise at that sigma; "
            "`inverted` runs them backwards through the same Euler ODE with the job's conditioning "
            "(strength x steps more UNet calls), so an unedited job reconstructs the clip closely."
        ),
    )

    @field_validator("source")
    @classmethod
    def _check_source(cls, ref: str) -> str:
        return check_video_ref(ref)


def check_video_ref(ref: str) -> str:
    """A video reference's syntax: `asset:<id>`, `data:video/<type>;base64,` or a local path."""
    kind = ref_kind(ref)
    if kind is RefKind.asset and not ASSET_ID.match(ref.removeprefix("asset:")):
        raise ValueError(f"an asset reference must be `asset:<id>` with id of [A-Za-z0-9_-]{{1,64}}, got {ref[:80]!r}")
    if kind is RefKind.data and not VIDEO_DATA_URI.match(ref):
        raise ValueError("a video data URI must look like `data:video/<type>;base64,<data>`")
    if kind is RefKind.url:
        raise ValueError("a video is `asset:<id>` or a `data:video/...` URI; upload it with POST /v1/assets")
    if kind is RefKind.path and ("\x00" in ref or len(ref) > 4096):
        raise ValueError("a local path must be under 4096 characters with no NUL byte")
    return ref


def first_step(strength: float, steps: int) -> int:
    """The denoising step an edit starts at: round((1 − strength) · steps); `steps` means none runs."""
    return round((1.0 - strength) * steps)


def sample_times(start: float, num_frames: int, fps: int) -> list[float]:
    """The times (seconds) of the frames an edit reads: `num_frames` at `fps` from `start`."""
    return [start + f / fps for f in range(num_frames)]


def clip_too_short(duration: float, start: float, num_frames: int, fps: int) -> str | None:
    """Why a clip of `duration` seconds cannot give the frames (None when it can): the last frame read
    must start before the clip ends."""
    last = sample_times(start, num_frames, fps)[-1]
    if last < duration:
        return None
    return (
        f"the video is {duration:.3f} s long; {num_frames} frames at {fps} fps from {start:g} s need it to run "
        f"past {last:.3f} s"
    )
