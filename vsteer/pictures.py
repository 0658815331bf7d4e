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
