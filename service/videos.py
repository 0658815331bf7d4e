"""What an uploaded or inline video really holds, probed with PyAV before any worker sees it.

A video is decoded frame by frame (a truncated or corrupt stream fails here, not on a GPU), with the
limits of `api_schemas.video` checked from the header first (a few bytes can claim a huge frame or a
ten-hour clip) and then on every decoded frame. Each refusal is a `MediaRejected` naming its rule.
"""

import io
from dataclasses import dataclass
from typing import Any, BinaryIO

import av

from api_schemas.video import MAX_VIDEO_FRAMES, MAX_VIDEO_PIXELS, MAX_VIDEO_SECONDS, MIN_VIDEO_SIDE
from service.images import MediaRejected

# Containers a worker reads, by the name FFmpeg's demuxer gives them.
_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "matroska,webm": "video/webm"}


@dataclass(frozen=True)
class VideoInfo:
    """A probed video: its first video stream's codec, frame size, frame count, duration and frame rate."""

    content_type: str
    codec: str
    width: int
    height: int
    frames: int
    duration: float
    fps: float


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_VIDEO_PIXELS:
        raise MediaRejected(
            "max_video_pixels",
            f"the video is {width}x{height} = {width * height} pixels, over the limit of {MAX_VIDEO_PIXELS}",
        )
    if min(width, height) < MIN_VIDEO_SIDE:
        raise MediaRejected(
            "min_video_side", f"the video is {width}x{height} pixels; each side must be {MIN_VIDEO_SIDE} or more"
        )


def _check_seconds(seconds: float) -> None:
    if seconds > MAX_VIDEO_SECONDS:
        raise MediaRejected(
            "max_video_seconds", f"the video is {seconds:.1f} s long, over the limit of {MAX_VIDEO_SECONDS:g} s"
        )


def inspect_video(f: BinaryIO) -> VideoInfo:
    """Probe and decode the whole video; raises `MediaRejected` naming the broken rule."""
    f.seek(0)
    try:
        with av.open(f, mode="r") as container:
            return _inspect(container)
    except MediaRejected:
        raise
    except EOFError:  # FFmpeg's end of file before the streams' first frame (a header and nothing more)
        raise MediaRejected("video_has_frames", "the video ends before its first frame") from None
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise MediaRejected("video_decodable", f"the video cannot be decoded ({type(exc).__name__})") from None


def _inspect(container: Any) -> VideoInfo:
    content_type = _CONTAINERS.get(container.format.name)
    if content_type is None:
        raise MediaRejected("video_format", f"container {container.format.name!r} is not accepted (MP4, WebM)")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise MediaRejected("video_stream", f"the file has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    codec = stream.codec_context.name
    header_width, header_height = stream.codec_context.width, stream.codec_context.height
    if header_width and header_height:
        _check_size(header_width, header_height)
    if container.duration is not None:
        _check_seconds(container.duration / av.time_base)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    frames, width, height = 0, header_width, header_height
    first: float | None = None
    last: float | None = None
    for frame in container.decode(stream):
        frames += 1
        if frames > MAX_VIDEO_FRAMES:
            raise MediaRejected("max_video_frames", f"the video has more than the limit of {MAX_VIDEO_FRAMES} frames")
        _check_size(frame.width, frame.height)
        width, height = frame.width, frame.height
        if frame.time is not None:
            first = frame.time if first is None else first
            last = frame.time
    if frames == 0:
        raise MediaRejected("video_has_frames", "the video stream has no frames")
    if first is not None and last is not None and fps:
        duration = last - first + 1 / fps
    elif stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = frames / fps if fps else 0.0
    _check_seconds(duration)
    return VideoInfo(content_type, codec, width, height, frames, round(duration, 6), round(fps, 6))


def inspect_video_bytes(raw: bytes) -> VideoInfo:
    return inspect_video(io.BytesIO(raw))
