"""Videos made by code for the tests, good and bad: nothing to download."""

import io
import struct
from fractions import Fraction

import av
import numpy as np


def clip(size: tuple[int, int] = (64, 64), frames: int = 12, fps: int | Fraction = 8, codec: str = "libx264",
         fmt: str = "mp4", pix_fmt: str = "yuv420p") -> bytes:  # fmt: skip
    """A plain clip of grey frames getting lighter, in any codec and container PyAV writes."""
    width, height = size
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for f in range(frames):
            image = np.full((height, width, 3), (40 + 5 * f) % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def header_only() -> bytes:
    """A WebM with one VP9 video track and no frames: the header, nothing more."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return buffer.getvalue()


def audio_only() -> bytes:
    """An MP4 (M4A) with one AAC audio stream and no video."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        samples = np.zeros((1, 1024), np.float32)
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 8000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def huge_in_header(width: int = 65535, height: int = 65535) -> bytes:
    """A small MJPEG MP4 whose sample description and JPEG frame headers claim `width` x `height`."""
    data = bytearray(clip((16, 16), frames=2, codec="mjpeg", pix_fmt="yuvj420p"))
    entry = data.find(b"mp4v") if data.find(b"jpeg") < 0 else data.find(b"jpeg")
    # VisualSampleEntry: 6 reserved + 2 data_reference_index + 16 pre-defined/reserved, then width, height.
    struct.pack_into(">HH", data, entry + 4 + 24, width, height)
    start = 0
    while (sof := data.find(b"\xff\xc0", start)) >= 0:  # every JPEG's start-of-frame: length, precision, h, w
        struct.pack_into(">HH", data, sof + 5, height, width)
        start = sof + 2
    return bytes(data)


def many_frame_gif(frames: int = 10_000, side: int = 8) -> bytes:
    """An animated GIF of `side` x `side` with `frames` frames of 10 ms, written byte by byte (each frame
    paints one pixel), so that ten thousand frames take milliseconds to make."""
    header = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    delay = b"\x21\xf9\x04\x00\x01\x00\x00\x00"
    # 1x1 image at (0, 0); LZW minimum code size 2: clear (4), index 0, end (5) in 3-bit codes.
    pixel = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + loop + (delay + pixel) * frames + b"\x3b"
