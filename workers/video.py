"""Writing and reading the video outputs of a job: the MP4, its poster, a looping preview, a contact sheet.

Frames everywhere are numpy float32 arrays F×H×W×3, RGB, values in [0, 1] (the layout of ``frames.npy``).
The writers also take uint8 frames that :func:`to_uint8` made, and use them as they are: a job converts
its frames once and hands the same 8-bit frames to every writer.

Conversion to 8 bits is ``round(clip(x, 0, 1) · 255)`` with round-half-to-even (``np.rint``): values
outside [0, 1] are clipped (the VAE decoder overshoots slightly), non-finite values raise. The same
float frames therefore always give the same uint8 frames.

The MP4 is what browsers play: H.264 (libx264), ``yuv420p``, the ``moov`` box before ``mdat``
(``+faststart``), even width and height. RGB is converted to limited-range BT.709 Y'CbCr and the stream is
tagged as such, so that players and :func:`read_frames` invert the same matrix.

Determinism: the same frames and settings give a byte-identical file with the same FFmpeg/x264 build.
For that the encoder runs on one thread (x264's output depends on its thread count, which would
otherwise follow the machine's CPU count), macroblock-tree rate control is off (with it on, repeated
encodes in one process differed; off costs under 1 % in size at 576×1024, more on tiny frames) and the
muxer runs in bit-exact mode (no version string, no creation time). A different FFmpeg or x264 build may
give different bytes; decoded frames are what to compare across builds.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation
from PIL import Image

PreviewFormat = Literal["gif", "webp"]

_CODEC = "libx264"
_PIX_FMT = "yuv420p"
# Denominator bound when turning a float fps into a rational time base (29.97 -> 2997/100).
_FPS_MAX_DENOMINATOR = 1001
# Exact rounding and no CPU-specific shortcuts in swscale: the same pixels on every machine.
_SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.BITEXACT


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds in a video file."""

    codec: str
    """Codec name as FFmpeg reports it, e.g. ``h264``."""
    pix_fmt: str
    """Pixel format of the decoded frames, e.g. ``yuv420p``."""
    width: int
    height: int
    frame_count: int
    """Frames actually decoded (not the container's estimate)."""
    fps: float
    """Average frame rate of the video stream."""
    duration: float
    """Seconds: ``frame_count / fps``."""
    faststart: bool
    """True when the ``moov`` box comes before the ``mdat`` box (playback can start while downloading)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- conversions and checks -------------------------------------------------------------------------------


def to_uint8(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """F×H×W×3 float in [0, 1] -> F×H×W×3 uint8: clip to [0, 1], scale by 255, round half to even.

    Frame by frame, into ``out`` when given (a view into a contact sheet, say): beyond the result it holds
    one float frame, not a float copy of the whole (a 16-clip sweep's frames are 2.8 GB in float32 at
    576×1024). uint8 frames are returned as they are (copied into ``out`` when given).
    """
    check_frames(frames)
    if out is None:
        if frames.dtype == np.uint8:
            return frames
        out = np.empty(frames.shape, np.uint8)
    elif out.shape != frames.shape or out.dtype != np.uint8:
        raise ValueError(f"out must be a uint8 array of shape {frames.shape}, got {out.dtype} {out.shape}")
    if frames.dtype == np.uint8:
        out[...] = frames
        return out
    scaled = np.empty(frames.shape[1:], frames.dtype)
    for index, frame in enumerate(frames):
        if not np.isfinite(frame).all():
            raise ValueError(f"frames must be finite, got NaN or infinite values in frame {index}")
        np.clip(frame, 0.0, 1.0, out=scaled)
        scaled *= 255.0
        out[index] = np.rint(scaled, out=scaled)
    return out


def check_frames(frames: np.ndarray) -> None:
    """Raise ValueError unless ``frames`` is a non-empty array F×H×W×3 of floats (or of uint8 from
    :func:`to_uint8`)."""
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape F×H×W×3, got {frames.shape}")
    if not (np.issubdtype(frames.dtype, np.floating) or frames.dtype == np.uint8):
        raise ValueError(f"frames must be a float array with values in [0, 1] (or uint8), got dtype {frames.dtype}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"frames must hold at least one frame of at least 1×1 pixels, got {frames.shape}")


def _check_even(width: int, height: int) -> None:
    # Sizes are multiples of 64 throughout the service, so an odd size is a bug upstream: say so.
    if width % 2 or height % 2:
        raise ValueError(
            f"H.264 yuv420p needs even width and height, got {width}×{height} (width×height); "
            "sizes are multiples of 64, so an odd size is a bug in the caller"
        )


def _fps_fraction(fps: float) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, int | float | Fraction) or not fps > 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not math.isfinite(float(fps)):
        raise ValueError(f"fps must be finite, got {fps!r}")
    return Fraction(fps).limit_denominator(_FPS_MAX_DENOMINATOR)


def _check_crf(crf: float) -> None:
    if isinstance(crf, bool) or not isinstance(crf, int | float) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be between 0 and 51 (libx264, 8-bit), got {crf!r}")


# --- MP4 ---------------------------------------------------------------------------------------------------


def write_mp4(frames: np.ndarray, path: str | Path, fps: float, crf: float = 18) -> VideoInfo:
    """Encode F×H×W×3 float frames in [0, 1] as a browser-playable H.264 MP4 and return its probe.

    Exactly F frames are written, frame ``i`` at time ``i / fps``. Raises ValueError on odd width or
    height (no silent cropping), on a non-positive fps and on a crf outside [0, 51].
    """
    # 1. check inputs
    pixels = to_uint8(frames)
    _, height, width, _ = pixels.shape
    _check_even(width, height)
    rate = _fps_fraction(fps)
    _check_crf(crf)

    # 2. encode
    # Bit-exact muxing leaves the muxer's version string out of the file, for reproducible bytes.
    options = {"movflags": "+faststart", "fflags": "+bitexact"}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = _add_h264_stream(container, width, height, rate, crf)
        for index, image in enumerate(pixels):
            frame = _rgb_to_yuv_frame(image)
            frame.pts = index
            frame.time_base = stream.codec_context.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    # 3. report what was actually written
    info = probe(path)
    if info.frame_count != len(pixels):
        raise RuntimeError(f"wrote {len(pixels)} frames to {path} but {info.frame_count} decode back")
    return info


def _add_h264_stream(container: Any, width: int, height: int, rate: Fraction, crf: float) -> Any:
    stream = container.add_stream(_CODEC, rate=rate)
    stream.width = width
    stream.height = height
    stream.pix_fmt = _PIX_FMT
    stream.time_base = 1 / rate
    ctx = stream.codec_context
    ctx.time_base = 1 / rate
    # One thread: x264's bitstream depends on the thread count, and the auto count follows the CPU.
    ctx.thread_count = 1
    ctx.colorspace = Colorspace.ITU709
    ctx.color_range = ColorRange.MPEG
    ctx.color_primaries = ColorPrimaries.BT709
    ctx.color_trc = ColorTrc.BT709
    # Macroblock-tree rate control made libx264 (x264 core 165, PyAV 18 wheel) give different bytes for
    # the same frames from one encode to the next in a process, even on one thread (measured on small
    # frames; B-frames kept); without it the output was identical across runs and processes.
    stream.options = {"crf": f"{crf:g}", "preset": "medium", "x264-params": "mbtree=0"}
    return stream


def _rgb_to_yuv_frame(image: np.ndarray) -> av.VideoFrame:
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return rgb.reformat(
        format=_PIX_FMT,
        src_colorspace=Colorspace.ITU709,
        dst_colorspace=Colorspace.ITU709,
        src_color_range=ColorRange.JPEG,
        dst_color_range=ColorRange.MPEG,
        dst_color_trc=ColorTrc.BT709,
        dst_color_primaries=ColorPrimaries.BT709,
        interpolation=_SWS_FLAGS,
        threads=1,
    )


def probe(path: str | Path) -> VideoInfo:
    """Describe the first video stream of ``path``; the frame count comes from decoding every frame."""
    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frame_count = 0
        pix_fmt = stream.codec_context.pix_fmt or ""
        width, height = stream.codec_context.width, stream.codec_context.height
        for frame in container.decode(stream):
            if frame_count == 0:
                pix_fmt, width, height = frame.format.name, frame.width, frame.height
            frame_count += 1
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    return VideoInfo(
        codec=codec,
        pix_fmt=pix_fmt,
        width=width,
        height=height,
        frame_count=frame_count,
        fps=fps,
        duration=frame_count / fps if fps else 0.0,
        faststart=is_faststart(path),
    )


def read_frames(path: str | Path) -> np.ndarray:
    """Decode every frame of the first video stream as F×H×W×3 float32 RGB in [0, 1]."""
    images = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            images.append(_frame_to_rgb(frame))
    if not images:
        raise ValueError(f"{path} holds no decodable video frames")
    return np.stack(images).astype(np.float32) / np.float32(255.0)


def _frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    # Untagged streams (other tools' files) are read as limited-range BT.601, FFmpeg's default.
    colorspace = frame.colorspace if frame.colorspace in set(Colorspace) else Colorspace.ITU601
    color_range = ColorRange.JPEG if frame.color_range == ColorRange.JPEG else ColorRange.MPEG
    rgb = frame.reformat(
        format="rgb24",
        src_colorspace=colorspace,
        dst_colorspace=colorspace,
        src_color_range=color_range,
        dst_color_range=ColorRange.JPEG,
        interpolation=_SWS_FLAGS,
        threads=1,
    )
    return rgb.to_ndarray()


def is_faststart(path: str | Path) -> bool:
    """True when the top-level ``moov`` box of an MP4/MOV file comes before its first ``mdat`` box."""
    order = top_level_boxes(path)
    if "moov" not in order or "mdat" not in order:
        return False
    return order.index("moov") < order.index("mdat")


def top_level_boxes(path: str | Path) -> list[str]:
    """Types of the top-level ISO-BMFF boxes of ``path``, in file order (e.g. ``ftyp, moov, mdat``)."""
    types = []
    with open(path, "rb") as f:
        f.seek(0, 2)
        end = f.tell()
        offset = 0
        while offset + 8 <= end:
            f.seek(offset)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:  # 64-bit size follows the type
                (size,) = struct.unpack(">Q", f.read(8))
            elif size == 0:  # box runs to the end of the file
                size = end - offset
            if size < 8:
                raise ValueError(f"{path}: malformed box of size {size} at offset {offset}")
            types.append(kind.decode("latin-1"))
            offset += size
    return types


# --- poster and preview ------------------------------------------------------------------------------------


def write_poster(frames: np.ndarray, path: str | Path, index: int = 0) -> None:
    """Write frame ``index`` (default the first; negative counts from the end) as a PNG."""
    check_frames(frames)
    count = len(frames)
    if not -count <= index < count:
        raise ValueError(f"index must be in [{-count}, {count - 1}] for {count} frames, got {index}")
    Image.fromarray(to_uint8(frames[index : index + 1 or None])[0]).save(path, format="PNG")


def write_preview(
    frames: np.ndarray,
    path: str | Path,
    fps: float,
    fmt: PreviewFormat = "gif",
    max_side: int = 512,
) -> tuple[int, int]:
    """Write an animated, endlessly looping GIF or WebP of every frame; return its (width, height).

    Frames are downscaled (Lanczos) so that the longer side is at most ``max_side``, keeping the aspect
    ratio; they are never upscaled. Every frame is kept (no temporal subsampling), each shown for
    ``1000 / fps`` ms, which GIF stores in whole centiseconds (7 fps -> 140 ms). Pillow merges a frame
    identical to the one before it into a longer frame, so a clip with repeated frames has fewer frames
    in the file.
    """
    pixels = to_uint8(frames)
    rate = _fps_fraction(fps)
    if fmt not in ("gif", "webp"):
        raise ValueError(f"fmt must be 'gif' or 'webp', got {fmt!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive integer, got {max_side!r}")

    _, height, width, _ = pixels.shape
    size = preview_size(width, height, max_side)

    def shown(image: Image.Image) -> Image.Image:
        # Frame by frame, so that only the preview's frames are held, not the clip's at full size.
        if size != (width, height):
            image = image.resize(size, Image.Resampling.LANCZOS)
        return gif_colours(image) if fmt == "gif" else image

    images = [shown(Image.fromarray(p)) for p in pixels]
    duration_ms = round(1000 / rate)
    if fmt == "gif":
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    else:
        images[0].save(
            path,
            format="WEBP",
            save_all=True,
            append_images=images[1:],
            duration=duration_ms,
            loop=0,
            quality=80,
            method=4,
        )
    return size


# Each GIF frame's palette is chosen on the frame reduced by this factor on each side. Pillow's own
# conversion (median cut over every pixel) took 4-6 s for 25 frames at 512x288 on a 2-core CPU, the
# largest part of a full-size job's CPU work; the reduced sample takes a quarter of that (bench.cpu_tail:
# -0.12 dB on a textured pan, equal on smooth gradients). The cost: colours of 1-pixel lines and
# isolated pixels are averaged away from the palette (a frame of 1-pixel lines: 22.6 against 26.9 dB).
GIF_PALETTE_REDUCTION = 4


def gif_colours(image: Image.Image) -> Image.Image:
    """`image` in 256 colours: a median-cut palette of the frame reduced by GIF_PALETTE_REDUCTION (box
    average), every pixel mapped to a close palette colour without dithering (as Pillow's own
    conversion maps them). Frames too small to reduce get Pillow's own conversion."""
    if min(image.size) < 16 * GIF_PALETTE_REDUCTION:
        return image.quantize(256)
    palette = image.reduce(GIF_PALETTE_REDUCTION).quantize(256)
    return image.quantize(palette=palette, dither=Image.Dither.NONE)


def preview_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is at most ``max_side``; never upscaled."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- contact sheet -----------------------------------------------------------------------------------------


def write_contact_sheet_video(
    clips: list[np.ndarray],
    path: str | Path,
    fps: float,
    crf: float = 18,
    cols: int | None = None,
) -> VideoInfo:
    """Tile clips of identical shape F×H×W×3 in a grid and write the grid as one MP4.

    Clips fill the grid row by row; ``cols`` defaults to ``ceil(sqrt(len(clips)))``. Empty cells and the
    padding that makes the sheet's width and height even are black.
    """
    sheet = contact_sheet(clips, cols)
    return write_mp4(sheet, path, fps, crf)


def contact_sheet(clips: list[np.ndarray], cols: int | None = None) -> np.ndarray:
    """The grid of :func:`write_contact_sheet_video` as F×H'×W'×3 uint8 frames (:func:`to_uint8`) with
    even H', W': a quarter of the memory of the float grid, and the writers take it as it is."""
    if not clips:
        raise ValueError("clips must hold at least one clip")
    for k, clip in enumerate(clips):
        check_frames(clip)
        if clip.shape != clips[0].shape:
            raise ValueError(f"every clip must have shape {clips[0].shape} like clip 0, clip {k} has {clip.shape}")
    n = len(clips)
    if cols is None:
        cols = math.ceil(math.sqrt(n))
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ValueError(f"cols must be a positive integer, got {cols!r}")
    rows = math.ceil(n / cols)
    count, height, width, _ = clips[0].shape
    sheet_h, sheet_w = rows * height, cols * width
    sheet = np.zeros((count, sheet_h + sheet_h % 2, sheet_w + sheet_w % 2, 3), dtype=np.uint8)
    for k, clip in enumerate(clips):
        r, c = divmod(k, cols)
        to_uint8(clip, out=sheet[:, r * height : (r + 1) * height, c * width : (c + 1) * width])
    return sheet


class Mp4Writer:
    """`write_mp4`'s encoding, fed a few frames at a time: a long video is written segment by segment,
    so only the frames being written are held, never the whole video. Use as a context manager;
    `write` takes F×H×W×3 frames (float in [0, 1] or uint8) of the size given."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, crf: float = 18) -> None:
        _check_even(width, height)
        _check_crf(crf)
        self.path, self.width, self.height, self.count = Path(path), width, height, 0
        options = {"movflags": "+faststart", "fflags": "+bitexact"}
        self.container = av.open(str(path), mode="w", format="mp4", options=options)
        self.stream = _add_h264_stream(self.container, width, height, _fps_fraction(fps), crf)

    def write(self, frames: np.ndarray) -> None:
        pixels = to_uint8(frames)
        if pixels.shape[1:3] != (self.height, self.width):
            raise ValueError(f"frames must be {self.height}x{self.width}, got {pixels.shape[1]}x{pixels.shape[2]}")
        for image in pixels:
            frame = _rgb_to_yuv_frame(image)
            frame.pts = self.count
            frame.time_base = self.stream.codec_context.time_base
            self.container.mux(self.stream.encode(frame))
            self.count += 1

    def close(self) -> VideoInfo:
        """Flush the encoder, close the file and return its probe."""
        self.container.mux(self.stream.encode(None))
        self.container.close()
        info = probe(self.path)
        if info.frame_count != self.count:
            raise RuntimeError(f"wrote {self.count} frames to {self.path} but {info.frame_count} decode back")
        return info

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None:
            self.container.close()
