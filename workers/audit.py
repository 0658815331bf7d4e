"""Temporal-consistency audit of a generated clip: flicker, optical-flow warp error, latent smoothness,
and the frames that break the pattern of the rest.

Frames are F×H×W×3 float arrays in [0, 1] (RGB). Every score is computed on luma,
``Y = 0.2126·R + 0.7152·G + 0.0722·B`` (BT.709 weights on the stored, gamma-encoded values), so scores are
in the same [0, 1] units as the pixels. A transition ``t`` is the step from frame ``t`` to frame ``t + 1``;
a clip of F frames has F − 1 transitions.

Scores per transition ``t``:

- ``frame_diff[t] = mean_x |Y_{t+1}(x) − Y_t(x)|``.
- ``warp_error[t]``: Farneback optical flow (OpenCV) from frame t to t+1 and back, on luma quantised to
  uint8; frame t+1 is warped back onto frame t along the forward flow (``cv2.remap``, bilinear) and
  ``warp_error[t] = mean_x |Y_t(x) − Y_{t+1}(x + w(x))|`` over the pixels that pass the forward-backward
  check and whose target lies inside the frame. The check is the one of Sundaram, Brox and Keutzer
  (ECCV 2010) in the form used by Ruder, Dosovitskiy and Brox (GCPR 2016): with ``w = flow_fw(x)`` and
  ``ŵ = flow_bw(x + w)``, a pixel is occluded when ``|w + ŵ|² > 0.01·(|w|² + |ŵ|²) + 0.5`` (pixels²).
  Their motion-boundary test is not applied. This is the warping error of Lai et al. (ECCV 2018),
  with an L1 norm on luma. Flow and warp error are measured on luma downscaled so that its longer side
  is at most ``flow_max_side`` (512 by default), and the pixel units above are those of that size.
- ``occlusion[t]``: fraction of pixels excluded from ``warp_error[t]`` (occluded or leaving the frame).
  A frame that does not follow from its neighbours (noise, a cut) has inconsistent flow, so this is
  high where the warp error alone, measured on the few surviving pixels, may not be.

Scores for the clip:

- ``luma_flicker = mean_{f=1..F−2} |m_{f+1} − 2·m_f + m_{f−1}|`` with ``m_f`` the mean luma of frame f:
  global brightness pumping. A static clip scores 0, a linear fade 0 up to rounding.
- ``change_flicker = mean_{t=0..F−3} |frame_diff[t+1] − frame_diff[t]|``: how unevenly the amount of
  change varies from one transition to the next. A static clip scores 0, steady motion about 0.
- ``flicker = luma_flicker + change_flicker`` (0 for clips of fewer than 3 frames, which have no second
  difference). A static clip scores exactly 0.
- ``warp_error_mean``: mean of ``warp_error`` over transitions.
- ``latent_smoothness`` (when latents F×C×h×w are given):
  ``mean_{f=1..F−2} mean(Δ²z_f²) / mean_f mean(z_f²)`` with ``Δ²z_f = z_{f+1} − 2·z_f + z_{f−1}``: the
  mean squared second difference along frames, divided by the mean squared latent, so it does not
  depend on the latents' scale. A path linear in f scores 0. ``latent_accel[f]`` is the per-frame term
  ``mean(Δ²z_f²) / mean_f mean(z_f²)`` for interior frames (0 at both ends).

Outlier frames: for each of ``frame_diff``, ``warp_error`` and ``occlusion`` a transition is an outlier
when its score exceeds ``median + max(k·1.4826·MAD, floor)`` over the clip's transitions (MAD: median
absolute deviation; 1.4826·MAD estimates a standard deviation; k = ``OUTLIER_K`` = 5). The floor (per
metric, ``OUTLIER_FLOORS``) keeps the rule from flagging noise in a near-static clip, where MAD ≈ 0.
A bad frame g changes both transitions g−1→g and g→g+1, so outlier transitions are turned into frames
run by run: in a run of consecutive outlier transitions a..b (frames a..b+1), the frames shared by two
outlier transitions, a+1..b, are flagged. A run of one transition t (a jump between two frames) flags
frame t+1, the first frame after the jump, except that t = 0 flags frame 0 and t = F−2 flags frame F−1
(a bad first or last frame has only one transition). A frame is reported once, with every metric that
flagged it. Latents are reported but do not flag frames.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np

LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)

# Farneback parameters (OpenCV's own example): pyramid scale, levels, window, iterations, poly_n, sigma.
FARNEBACK = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
# Flow is measured at most this large (longer side, pixels): Farneback on 25 frames of 576×1024 takes
# seconds, at 512 a quarter of that, and a flicker or a broken frame shows as well at that size.
FLOW_MAX_SIDE = 512
OCCLUSION_RELATIVE = 0.01
OCCLUSION_ABSOLUTE = 0.5  # pixels²

OUTLIER_K = 5.0
MAD_TO_SIGMA = 1.4826
# Smallest excess over the median that can flag a transition, per metric, in the metric's units:
# 0.03 of luma range ≈ 8 grey levels; a quarter of the pixels failing the flow check.
OUTLIER_FLOORS = {"frame_diff": 0.03, "warp_error": 0.03, "occlusion": 0.25}


@dataclasses.dataclass(frozen=True)
class Outlier:
    """A frame that breaks the clip's temporal pattern, and the metrics that say so."""

    frame: int
    metrics: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "metrics": list(self.metrics)}


@dataclasses.dataclass(frozen=True)
class AuditReport:
    """Temporal-consistency scores of one clip; see the module docstring for every definition."""

    num_frames: int
    height: int
    width: int
    luma_mean: list[float]
    """Per frame (F)."""
    frame_diff: list[float]
    """Per transition (F − 1)."""
    warp_error: list[float]
    """Per transition (F − 1); 0 where no pixel passes the occlusion check."""
    occlusion: list[float]
    """Per transition (F − 1): fraction of pixels left out of the warp error."""
    flicker: float
    luma_flicker: float
    change_flicker: float
    warp_error_mean: float
    latent_smoothness: float | None
    latent_accel: list[float] | None
    """Per frame (F), 0 at both ends; None without latents."""
    outliers: list[Outlier]
    thresholds: dict[str, float]
    """The outlier threshold each metric's transitions were compared against."""
    flow_max_side: int | None

    @property
    def flagged_frames(self) -> list[int]:
        return [o.frame for o in self.outliers]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, ints, lists and dicts."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["outliers"] = [o.to_dict() for o in self.outliers]
        data["flagged_frames"] = self.flagged_frames
        data["params"] = {
            "flow_max_side": data.pop("flow_max_side"),
            "luma_weights": LUMA_WEIGHTS.tolist(),
            "farneback": dict(FARNEBACK),
            "occlusion": {"relative": OCCLUSION_RELATIVE, "absolute": OCCLUSION_ABSOLUTE},
            "outlier_k": OUTLIER_K,
            "outlier_floors": dict(OUTLIER_FLOORS),
        }
        return data


def audit_frames(
    frames: np.ndarray, latents: np.ndarray | None = None, flow_max_side: int | None = FLOW_MAX_SIDE
) -> AuditReport:
    """Audit F×H×W×3 float frames in [0, 1] (F ≥ 2), optionally with their latents F×C×h×w.

    Optical flow and warp error are measured on luma downscaled (area average) so that its longer side
    is at most ``flow_max_side`` pixels (None: full size); everything else at full size.
    """
    # 1. check inputs
    check_inputs(frames, latents)
    if flow_max_side is not None and (isinstance(flow_max_side, bool) or flow_max_side < 16):
        raise ValueError(f"flow_max_side must be None or at least 16 pixels, got {flow_max_side!r}")

    # 2. per-frame luma and frame differences
    luma = to_luma(frames)
    luma_mean = luma.mean(axis=(1, 2))
    # Pair by pair: the differences of the whole clip at once would be another two copies of the luma.
    frame_diff = np.concatenate(
        [np.abs(np.diff(luma[t : t + 2], axis=0)).mean(axis=(1, 2)) for t in range(len(luma) - 1)]
    )

    # 3. optical-flow warp error
    flow_luma = downscale(luma, flow_max_side)
    warp = [warp_error(flow_luma[t], flow_luma[t + 1]) for t in range(len(luma) - 1)]
    warp_err = np.array([w[0] for w in warp])
    occlusion = np.array([w[1] for w in warp])

    # 4. clip scores
    luma_flicker = float(np.abs(np.diff(luma_mean, n=2)).mean()) if len(luma) >= 3 else 0.0
    change_flicker = float(np.abs(np.diff(frame_diff)).mean()) if len(frame_diff) >= 2 else 0.0

    # 5. latent path
    smoothness, accel = (None, None) if latents is None else latent_path_smoothness(latents)

    # 6. outliers
    series = {"frame_diff": frame_diff, "warp_error": warp_err, "occlusion": occlusion}
    thresholds = {name: outlier_threshold(values, OUTLIER_FLOORS[name]) for name, values in series.items()}
    outliers = find_outlier_frames({name: values > thresholds[name] for name, values in series.items()}, len(luma))

    return AuditReport(
        num_frames=int(frames.shape[0]),
        height=int(frames.shape[1]),
        width=int(frames.shape[2]),
        luma_mean=_floats(luma_mean),
        frame_diff=_floats(frame_diff),
        warp_error=_floats(warp_err),
        occlusion=_floats(occlusion),
        flicker=luma_flicker + change_flicker,
        luma_flicker=luma_flicker,
        change_flicker=change_flicker,
        warp_error_mean=float(warp_err.mean()),
        latent_smoothness=smoothness,
        latent_accel=None if accel is None else _floats(accel),
        outliers=outliers,
        thresholds={name: float(value) for name, value in thresholds.items()},
        flow_max_side=flow_max_side,
    )


def check_inputs(frames: np.ndarray, latents: np.ndarray | None) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", type(frames).__name__)
        raise ValueError(f"frames must be a numpy array of shape F×H×W×3, got {shape}")
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be floats in [0, 1], got dtype {frames.dtype}")
    if frames.shape[0] < 2:
        raise ValueError(f"the audit needs at least 2 frames, got {frames.shape[0]}")
    if min(frames.shape[1:3]) < 1:
        raise ValueError(f"frames must be at least 1×1 pixels, got {frames.shape}")
    if not all(np.isfinite(frame).all() for frame in frames):  # frame by frame: no clip-sized mask
        raise ValueError("frames must be finite, got NaN or infinite values")
    if latents is not None:
        if not isinstance(latents, np.ndarray) or latents.ndim != 4:
            shape = getattr(latents, "shape", type(latents).__name__)
            raise ValueError(f"latents must be a numpy array of shape F×C×h×w, got {shape}")
        if latents.shape[0] != frames.shape[0]:
            raise ValueError(
                f"latents must have one entry per frame: {frames.shape[0]} frames, {latents.shape[0]} latents"
            )


def to_luma(frames: np.ndarray) -> np.ndarray:
    """F×H×W×3 float RGB -> F×H×W float32 BT.709 luma, values clipped to [0, 1] first.

    Frame by frame: beyond the luma (a third of the frames' float32) it holds one clipped frame."""
    weights = LUMA_WEIGHTS.astype(np.float32)
    luma = np.empty(frames.shape[:3], np.float32)
    for index, frame in enumerate(frames):
        luma[index] = np.clip(frame, 0.0, 1.0).astype(np.float32, copy=False) @ weights
    return luma


def downscale(luma: np.ndarray, max_side: int | None) -> np.ndarray:
    """F×H×W luma resized (area average) so that the longer side is at most ``max_side``; never upscaled."""
    height, width = luma.shape[1:]
    if max_side is None or max(height, width) <= max_side:
        return luma
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in luma])


def warp_error(luma0: np.ndarray, luma1: np.ndarray) -> tuple[float, float]:
    """(warp error, occluded fraction) of one transition between two H×W float luma frames in [0, 1].

    See the module docstring for the definition. Returns error 0 when no pixel passes the check.
    """
    gray0 = _to_gray8(luma0)
    gray1 = _to_gray8(luma1)
    flow_fw = cv2.calcOpticalFlowFarneback(gray0, gray1, None, **FARNEBACK)
    flow_bw = cv2.calcOpticalFlowFarneback(gray1, gray0, None, **FARNEBACK)

    height, width = luma0.shape
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = grid_x + flow_fw[..., 0]
    map_y = grid_y + flow_fw[..., 1]
    # Inside the frame = within the footprint of the edge pixels (their centres ± half a pixel).
    inside = (map_x >= -0.5) & (map_x <= width - 0.5) & (map_y >= -0.5) & (map_y <= height - 0.5)

    warped = cv2.remap(luma1, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    flow_bw_at = cv2.remap(flow_bw, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    mismatch = np.sum((flow_fw + flow_bw_at) ** 2, axis=-1)
    magnitude = np.sum(flow_fw**2, axis=-1) + np.sum(flow_bw_at**2, axis=-1)
    consistent = mismatch <= OCCLUSION_RELATIVE * magnitude + OCCLUSION_ABSOLUTE
    valid = inside & consistent

    occluded = 1.0 - float(valid.mean())
    if not valid.any():
        return 0.0, occluded
    error = float(np.abs(luma0.astype(np.float64) - warped)[valid].mean())
    return error, occluded


def latent_path_smoothness(latents: np.ndarray) -> tuple[float, np.ndarray]:
    """(smoothness, per-frame acceleration) of latents F×C×h×w; see the module docstring.

    Computed in float64. Fewer than 3 frames have no second difference: smoothness 0. An all-zero
    path has no scale: smoothness 0 when it has no second difference either.
    """
    z = latents.reshape(latents.shape[0], -1).astype(np.float64)
    accel = np.zeros(len(z))
    if len(z) < 3:
        return 0.0, accel
    scale = float(np.mean(z**2))
    second = np.mean(np.diff(z, n=2, axis=0) ** 2, axis=1)
    if scale == 0.0:
        return 0.0, accel
    accel[1:-1] = second / scale
    return float(second.mean() / scale), accel


def outlier_threshold(values: np.ndarray, floor: float) -> float:
    """``median + max(OUTLIER_K · 1.4826 · MAD, floor)`` of a metric's per-transition values."""
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return median + max(OUTLIER_K * MAD_TO_SIGMA * mad, floor)


def find_outlier_frames(flags: dict[str, np.ndarray], num_frames: int) -> list[Outlier]:
    """Turn per-metric boolean outlier transitions (length F − 1) into flagged frames, sorted."""
    by_frame: dict[int, list[str]] = {}
    for name, flagged in flags.items():
        for frame in transitions_to_frames(flagged, num_frames):
            by_frame.setdefault(frame, []).append(name)
    return [Outlier(frame=f, metrics=tuple(by_frame[f])) for f in sorted(by_frame)]


def transitions_to_frames(flagged: np.ndarray, num_frames: int) -> list[int]:
    """The frames implicated by runs of outlier transitions (rule in the module docstring)."""
    frames: list[int] = []
    t = 0
    last = num_frames - 2
    while t <= last:
        if not flagged[t]:
            t += 1
            continue
        start = t
        while t + 1 <= last and flagged[t + 1]:
            t += 1
        end = t
        if end > start:
            frames.extend(range(start + 1, end + 1))
        elif start == 0:
            frames.append(0)
        elif start == last:
            frames.append(num_frames - 1)
        else:
            frames.append(start + 1)
        t += 1
    return frames


def plot_scores(report: AuditReport, png_path: str | Path) -> None:
    """Write a PNG of the per-transition scores (and luma, latent acceleration) with flagged frames marked."""
    # Imported here: plotting is optional and matplotlib is slow to import.
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RuntimeError("plotting audit scores needs matplotlib (pip install matplotlib)") from exc

    frames = np.arange(report.num_frames)
    between = frames[:-1] + 0.5  # a transition sits between its two frames
    has_latents = report.latent_accel is not None
    fig = Figure(figsize=(9, 6 if has_latents else 4.5), layout="constrained")
    axes = fig.subplots(2 if has_latents else 1, 1, sharex=True, squeeze=False)[:, 0]

    ax = axes[0]
    ax.plot(between, report.frame_diff, "o-", label="frame difference")
    ax.plot(between, report.warp_error, "s-", label="warp error")
    ax.plot(between, report.occlusion, "^:", label="occluded fraction", alpha=0.7)
    ax.set_ylabel("score per transition")
    ax.set_title(
        f"flicker {report.flicker:.4f}   warp error {report.warp_error_mean:.4f}   "
        f"flagged {report.flagged_frames or 'none'}"
    )
    if has_latents:
        # The end frames have no second difference: leave them out rather than draw zeros.
        accel = report.latent_accel[1:-1]
        axes[1].plot(frames[1:-1], accel, "d-", color="tab:purple", label="latent acceleration")
        axes[1].set_ylabel("per frame")
    for axis in axes:
        for outlier in report.outliers:
            axis.axvline(outlier.frame, color="tab:red", alpha=0.5, linewidth=2)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize="small")
    if report.outliers:
        axes[0].plot([], [], color="tab:red", alpha=0.5, linewidth=2, label="flagged frame")
        axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("frame")
    axes[-1].set_xlim(-0.5, report.num_frames - 0.5)
    fig.savefig(png_path, format="png", dpi=100)


def _to_gray8(luma: np.ndarray) -> np.ndarray:
    return np.rint(luma * 255.0).astype(np.uint8)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]
