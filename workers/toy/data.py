"""Synthetic video for the toy model: coloured shapes gliding over plain or gradient backgrounds.

Every clip is made from a seed, with nothing downloaded. A shape (circle, square or triangle) of one
of a handful of colours moves to the right at a speed set by SVD's own controls: `motion_bucket_id`
gives its speed in pixels per second (`SPEED_PER_BUCKET` × bucket) and `fps` how often it is
sampled, so one frame moves it speed / fps pixels. The shape stays inside the frame for the whole
clip. Edges are anti-aliased (coverage from a signed distance), so the clips are smooth enough for a
small VAE.
"""

from dataclasses import dataclass

import numpy as np

SIZE = 64
NUM_FRAMES = 8
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 35),
    "green": (40, 200, 60),
    "blue": (45, 75, 225),
    "yellow": (235, 210, 40),
    "magenta": (215, 50, 205),
    "cyan": (40, 205, 215),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("plain", "gradient")
# Pixels per second per motion bucket: bucket 127 at 7 fps moves ~2.2 px a frame, and the fastest
# clip (bucket 255 at the lowest fps) still crosses at most ~60% of a 64-pixel frame in 8 frames.
SPEED_PER_BUCKET = 0.12
FPS_RANGE = (6, 10)
RADIUS_RANGE = (8.0, 12.0)


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one synthetic clip."""

    shape: str
    colour: str
    background: str
    background_rgb: tuple[tuple[int, int, int], tuple[int, int, int]]  # top and bottom (equal when plain)
    radius: float
    start: tuple[float, float]  # (x, y) of the shape's centre in the first frame
    motion_bucket_id: int
    fps: int
    num_frames: int = NUM_FRAMES
    size: int = SIZE
    tint: tuple[str, float] | None = None  # (colour, share): the shape's colour mixed toward another

    def rgb(self) -> np.ndarray:
        """The shape's colour (3,) float32 in [0, 255]: its own, or mixed toward `tint`'s."""
        own = np.array(COLOURS[self.colour], dtype=np.float32)
        if self.tint is None:
            return own
        other, share = self.tint
        return own * (1 - share) + np.array(COLOURS[other], dtype=np.float32) * share

    @property
    def step_px(self) -> float:
        """How far the shape moves right between two frames."""
        return SPEED_PER_BUCKET * self.motion_bucket_id / self.fps

    def centres(self) -> np.ndarray:
        """(F, 2) centre (x, y) of the shape in each frame."""
        x = self.start[0] + self.step_px * np.arange(self.num_frames)
        return np.stack([x, np.full(self.num_frames, self.start[1])], axis=1)


def random_spec(
    rng: np.random.Generator,
    *,
    num_frames: int = NUM_FRAMES,
    size: int = SIZE,
    motion_bucket_id: int | None = None,
    fps: int | None = None,
) -> ClipSpec:
    """A random clip: shape, colour, background, size, start, and (unless given) motion and fps."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    top = tuple(int(v) for v in rng.integers(20, 110, 3))
    bottom = tuple(int(v) for v in rng.integers(20, 110, 3)) if background == "gradient" else top
    bucket = int(rng.integers(0, 256)) if motion_bucket_id is None else motion_bucket_id
    rate = int(rng.integers(FPS_RANGE[0], FPS_RANGE[1] + 1)) if fps is None else fps
    radius = float(rng.uniform(*RADIUS_RANGE))
    travel = SPEED_PER_BUCKET * bucket / rate * (num_frames - 1)
    low, high = radius + 1, size - radius - 1 - travel
    x = float(rng.uniform(low, max(low, high)))
    y = float(rng.uniform(radius + 1, size - radius - 1))
    return ClipSpec(shape, colour, background, (top, bottom), radius, (x, y), bucket, rate, num_frames, size)  # type: ignore[arg-type]


def clip_spec(seed: int, **fixed: int) -> ClipSpec:
    """The clip of `seed` (the same seed gives the same clip); `fixed` as in `random_spec`."""
    return random_spec(np.random.default_rng(seed), **fixed)


def coverage(shape: str, centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """(H, W) fraction of each pixel the shape covers, in [0, 1], anti-aliased over one pixel."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xs - centre[0], ys - centre[1]
    if shape == "circle":
        distance = np.hypot(dx, dy) - radius
    elif shape == "square":
        half = radius * 0.85
        distance = np.maximum(np.abs(dx), np.abs(dy)) - half
    elif shape == "triangle":
        # Upward equilateral triangle inscribed in the circle of `radius`: the largest of the signed
        # distances to its three edges.
        normals = np.array([[0.0, 1.0], [0.866, -0.5], [-0.866, -0.5]], dtype=np.float32)
        inner = radius * 0.5
        distance = np.max([dx * n[0] + dy * n[1] for n in normals], axis=0) - inner
    else:
        raise ValueError(f"`shape` must be one of {SHAPES}, got {shape!r}")
    return np.clip(0.5 - distance, 0.0, 1.0)


def background(spec: ClipSpec) -> np.ndarray:
    """(H, W, 3) float32 background in [0, 255]: plain, or a vertical gradient from top to bottom."""
    top, bottom = (np.array(c, dtype=np.float32) for c in spec.background_rgb)
    mix = np.linspace(0.0, 1.0, spec.size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - mix) + bottom * mix, (spec.size, spec.size, 3)).copy()


def render(spec: ClipSpec) -> np.ndarray:
    """The clip's frames (F, H, W, 3) uint8."""
    base = background(spec)
    colour = spec.rgb()
    frames = np.empty((spec.num_frames, spec.size, spec.size, 3), dtype=np.uint8)
    for f, (x, y) in enumerate(spec.centres()):
        alpha = coverage(spec.shape, (float(x), float(y)), spec.radius, spec.size)[..., None]
        frames[f] = np.round(base * (1 - alpha) + colour * alpha).astype(np.uint8)
    return frames


def still(
    shape: str,
    colour: str,
    centre: tuple[float, float] = (24.0, 32.0),
    radius: float = 10.0,
    back: tuple[int, int, int] = (60, 60, 60),
    size: int = SIZE,
) -> np.ndarray:
    """One frame (H, W, 3) uint8 of a shape on a plain background: a conditioning image for demos and tests."""
    spec = ClipSpec(shape, colour, "plain", (back, back), radius, centre, 0, 7, 1, size)
    return render(spec)[0]
