"""Reading the real clip a `video` edit starts from: the job's frames at its fps, fitted to its size.

Frame f is the clip's frame showing at time `start + f / fps` (the last frame whose timestamp is at or
before it), so a clip of any frame rate gives the job's `num_frames` at the job's `fps`. Decoding stops
after the last frame needed. Whatever a worker cannot use (no video stream, undecodable data, too few
frames, sizes outside the limits of `api_schemas.video`) is a `VideoUnreadable` error naming
`video.source`: the job fails with problem type `video-unreadable`, and the worker goes on.
"""

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import PIL.Image

from api_schemas.refs import RefKind, ref_kind
from api_schemas.video import (
    MAX_VIDEO_FRAMES,
    MAX_VIDEO_PIXELS,
    MIN_VIDEO_SIDE,
    VideoEdit,
    VideoFit,
    clip_too_short,
    sample_times,
)
from workers.errors import VideoUnreadable
from workers.images import ImageResolver
from workers.plan import JobPlan
from workers.video import _frame_to_rgb

FIELD = "video.source"


@dataclass
class VideoClip:
    """The frames an edit starts from: `frames` (F, H, W, 3) uint8 RGB at the job's size, and what was
    read (`info`: codec, source size and frame rate, the source frame index of each frame)."""

    frames: np.ndarray
    info: dict[str, Any]

    def first_frame(self) -> PIL.Image.Image:
        return PIL.Image.fromarray(self.frames[0])


def fit_frame(image: PIL.Image.Image, width: int, height: int, fit: VideoFit) -> np.ndarray:
    """`image` at `width` x `height`: `crop` scales to cover and cuts the centre, `pad` scales to fit and
    pads with black, `stretch` scales each side on its own."""
    if fit == VideoFit.stretch or image.size == (width, height):
        return np.asarray(image.resize((width, height), PIL.Image.Resampling.BICUBIC))
    w, h = image.size
    scale = max(width / w, height / h) if fit == VideoFit.crop else min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    scaled = image.resize(size, PIL.Image.Resampling.BICUBIC)
    if fit == VideoFit.crop:
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        return np.asarray(scaled.crop((left, top, left + width, top + height)))
    canvas = PIL.Image.new("RGB", (width, height))
    canvas.paste(scaled, ((width - size[0]) // 2, (height - size[1]) // 2))
    return np.asarray(canvas)


def read_clip(data: bytes, spec: VideoEdit, num_frames: int, fps: int, width: int, height: int) -> VideoClip:
    """Decode the frames an edit reads from the video `data`; raises `VideoUnreadable`."""
    if not data:
        raise VideoUnreadable(FIELD, "the video is empty (0 bytes)")
    times = sample_times(spec.start, num_frames, fps)
    picked: list[np.ndarray] = []
    indices: list[int] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise VideoUnreadable(FIELD, "the file has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            _check_size(stream.codec_context.width, stream.codec_context.height)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            source_fps = float(rate) if rate else 0.0
            origin: float | None = None
            previous: tuple[int, PIL.Image.Image] | None = None
            index = -1
            for index, frame in enumerate(container.decode(stream)):
                if index >= MAX_VIDEO_FRAMES:
                    raise VideoUnreadable(FIELD, f"the video has more than the limit of {MAX_VIDEO_FRAMES} frames")
                _check_size(frame.width, frame.height)
                when = frame.time if frame.time is not None else (index / source_fps if source_fps else None)
                if when is None:
                    raise VideoUnreadable(FIELD, "the video's frames carry no timestamps and it has no frame rate")
                origin = when if origin is None else origin
                when -= origin
                # Every sample time this frame is past belongs to the frame before it.
                while previous is not None and len(picked) < num_frames and times[len(picked)] < when - 1e-6:
                    picked.append(fit_frame(previous[1], width, height, spec.fit))
                    indices.append(previous[0])
                if len(picked) == num_frames:
                    break
                previous = (index, PIL.Image.fromarray(_frame_to_rgb(frame)))
            if index < 0:
                raise VideoUnreadable(FIELD, "the video has no frames")
            if len(picked) < num_frames and previous is not None:
                # The last frame decoded shows for one frame period (or until the container's end).
                duration = _duration(container, stream, source_fps, previous[0])
                reason = clip_too_short(duration, spec.start, num_frames, fps)
                if reason is not None:
                    raise VideoUnreadable(FIELD, reason)
                while len(picked) < num_frames:
                    picked.append(fit_frame(previous[1], width, height, spec.fit))
                    indices.append(previous[0])
    except VideoUnreadable:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise VideoUnreadable(FIELD, f"the video cannot be decoded ({type(exc).__name__}: {exc})") from None
    info = {
        "codec": codec,
        "source_fps": source_fps,
        "source_frames": indices,
        "start": spec.start,
        "fit": str(spec.fit),
    }
    return VideoClip(frames=np.stack(picked), info=info)


def _duration(container: Any, stream: Any, source_fps: float, last_index: int) -> float:
    """The clip's length in seconds: the container's when it says, else frames over frame rate."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return (last_index + 1) / source_fps if source_fps else 0.0


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        return  # not known from the header: the decoded frames are checked
    if width * height > MAX_VIDEO_PIXELS:
        raise VideoUnreadable(
            FIELD, f"the video is {width}x{height} = {width * height} pixels, over the limit of {MAX_VIDEO_PIXELS}"
        )
    if min(width, height) < MIN_VIDEO_SIDE:
        raise VideoUnreadable(FIELD, f"the video is {width}x{height}; each side must be {MIN_VIDEO_SIDE} or more")


def load_job_video(
    plan: JobPlan, images: ImageResolver, decoded: dict[str, PIL.Image.Image], record: dict[str, Any]
) -> VideoClip | None:
    """Read the clip of the job's `video` (None without one) at the plan's frames, fps and size; record it
    in the manifest's `record` of inputs and, when the job has no `image` nor keyframes, hand its first
    frame to the job as the conditioning `image` in `decoded`."""
    spec = plan.job.video
    if spec is None:
        return None
    data = images.read(spec.source, FIELD)
    clip = read_clip(data, spec, plan.num_frames, plan.fps, plan.width, plan.height)
    ref = spec.source if ref_kind(spec.source) is not RefKind.data else f"data:…({len(data)} bytes)"
    record[FIELD] = {"ref": ref, "sha256": "sha256:" + hashlib.sha256(data).hexdigest(), **clip.info}
    if plan.job.image is None and plan.job.keyframes is None:
        decoded["image"] = clip.first_frame()
    return clip
