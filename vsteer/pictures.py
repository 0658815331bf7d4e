"""Synthetic pictures for tests, benchmarks and warm-ups: made by code, nothing to download."""

import io

import numpy as np
import PIL.Image


def smooth_picture(seed: int, size: tuple[int, int]) -> PIL.Image.Image:
    """A smooth random picture of `size` (width, height): low-frequency noise upsampled, so that
    resizing it is well behaved. The same seed gives the same picture."""
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
    return PIL.Image.fromarray(small).resize(size, PIL.Image.BICUBIC)


def png_bytes(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def panning_clip(seed: int, size: tuple[int, int], frames: int, fps: int = 8, codec: str = "libx264") -> bytes:
    """An MP4 of `frames` frames of `size` (width, height, both even) at `fps`: a smooth picture panning
    by two pixels a frame. The same arguments give the same frames."""
    import av

    width, height = size
    picture = np.asarray(smooth_picture(seed, (width + 2 * frames, height)))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12"} if codec == "libx264" else {}
        for f in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:, 2 * f : 2 * f + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()
