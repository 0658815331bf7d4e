"""What a toy clip shows, measured: where the shape is, what colour it is, how close two pictures are.

Frames are (H, W, 3) or (F, H, W, 3), float in [0, 1] or uint8. The shape is found as the pixels
that stand out from their row's median colour: the synthetic backgrounds are plain or vertical
gradients, constant along a row, and a shape covers well under half of any row.
"""

import numpy as np

# A pixel belongs to the shape when its colour is this far (0..1 per channel, Euclidean) from its
# row's background colour: far above the VAE's reconstruction error, far below any shape's contrast.
SHAPE_THRESHOLD = 0.15


def as_float(frames: np.ndarray) -> np.ndarray:
    """Frames as float64 in [0, 1]."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float64) / 255.0
    return frames.astype(np.float64)


def shape_weight(frame: np.ndarray, threshold: float = SHAPE_THRESHOLD) -> np.ndarray:
    """(H, W) how much each pixel stands out from its row's background, 0 below `threshold`."""
    pixels = as_float(frame)
    background = np.median(pixels, axis=1, keepdims=True)
    distance = np.linalg.norm(pixels - background, axis=-1)
    return np.where(distance > threshold, distance, 0.0)


def centroid(frame: np.ndarray) -> tuple[float, float]:
    """(x, y) of the shape's centre in pixels (pixel centres at +0.5); NaN when no shape stands out."""
    weight = shape_weight(frame)
    total = weight.sum()
    if total == 0:
        return float("nan"), float("nan")
    ys, xs = np.mgrid[0 : weight.shape[0], 0 : weight.shape[1]] + 0.5
    return float((weight * xs).sum() / total), float((weight * ys).sum() / total)


def centroids(frames: np.ndarray) -> np.ndarray:
    """(F, 2) centre of the shape in each frame."""
    return np.array([centroid(frame) for frame in frames])


def displacement(frames: np.ndarray) -> float:
    """How far right the shape moved from the first frame to the last, in pixels."""
    path = centroids(frames)
    return float(path[-1, 0] - path[0, 0])


def hue(rgb: np.ndarray) -> float:
    """Hue in degrees [0, 360) of one RGB colour in [0, 1] (red 0, green 120, blue 240)."""
    r, g, b = (float(v) for v in rgb)
    angle = np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b))
    return float(angle % 360.0)


def shape_colour(frame: np.ndarray) -> np.ndarray:
    """Mean RGB in [0, 1] of the pixels that clearly belong to the shape (weighted by how much they
    stand out); NaN when no shape stands out."""
    weight = shape_weight(frame)
    if weight.sum() == 0:
        return np.full(3, np.nan)
    pixels = as_float(frame)
    return (pixels * weight[..., None]).sum(axis=(0, 1)) / weight.sum()


def shape_hue(frame: np.ndarray) -> float:
    """Hue in degrees of the shape's mean colour."""
    return hue(shape_colour(frame))


def hue_distance(a: float, b: float) -> float:
    """Angular distance between two hues in degrees, in [0, 180]."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def channel_share(frames: np.ndarray, channel: int) -> float:
    """Mean share of one channel (0 red, 1 green, 2 blue) in each pixel's sum, over all pixels."""
    pixels = as_float(frames)
    total = pixels.sum(axis=-1) + 1e-6
    return float((pixels[..., channel] / total).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two pictures (or clips) in [0, 1] or uint8; inf when equal."""
    mse = float(((as_float(a) - as_float(b)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
