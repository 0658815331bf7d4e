"""workers.audit and the `vsteer audit` command: flicker, warp error, latent smoothness, flagged frames."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer

from vsteer.commands.audit import audit_command
from workers import audit
from workers.video import write_mp4

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture H×W×3 in [0, 1]: blobs about 8 pixels across."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def translating(frames: int = 12, height: int = 64, width: int = 64, dx: float = 1.0, dy: float = 0.5):
    """The texture sliding by (dx, dy) pixels per frame, cut from a larger canvas (no border effects)."""
    canvas = texture(height + 64, width + 64)
    clip = []
    for f in range(frames):
        shift = np.float32([[1, 0, -16 - dx * f], [0, 1, -16 - dy * f]])
        clip.append(cv2.warpAffine(canvas, shift, (width, height), flags=cv2.INTER_LINEAR))
    return np.stack(clip)


def with_glitch(clip: np.ndarray, frame: int, kind: str) -> np.ndarray:
    glitched = clip.copy()
    if kind == "noise":
        glitched[frame] = np.random.default_rng(7).random(clip.shape[1:], dtype=np.float32)
    else:
        glitched[frame] = 1.0 - clip[frame]
    return glitched


def test_static_video_has_zero_flicker_and_near_zero_warp_error() -> None:
    clip = np.repeat(texture(64, 64)[None], 10, axis=0)

    report = audit.audit_frames(clip)

    assert report.flicker == 0.0
    assert report.luma_flicker == 0.0
    assert report.change_flicker == 0.0
    assert report.frame_diff == [0.0] * 9
    assert report.warp_error_mean < 1e-3
    assert report.outliers == []


def test_static_video_with_sensor_noise_flags_nothing() -> None:
    clip = np.repeat(texture(64, 64)[None], 10, axis=0)
    clip = clip + np.random.default_rng(1).normal(0.0, 0.004, clip.shape).astype(np.float32)

    assert audit.audit_frames(clip).outliers == []


def test_translating_texture_has_low_warp_error() -> None:
    clip = translating(frames=12, dx=1.0, dy=0.5)

    report = audit.audit_frames(clip)

    assert report.warp_error_mean < 0.01
    # Flow compensation explains most of the change between frames.
    assert report.warp_error_mean < 0.25 * float(np.mean(report.frame_diff))
    assert report.flicker < 0.005
    assert report.outliers == []


@pytest.mark.parametrize(("kind", "frame"), [("noise", 6), ("invert", 6), ("invert", 1), ("noise", 0), ("invert", 11)])
def test_glitch_frame_is_flagged_and_no_other(kind: str, frame: int) -> None:
    clip = with_glitch(translating(frames=12), frame, kind)

    report = audit.audit_frames(clip)

    assert report.flagged_frames == [frame]
    assert "frame_diff" in report.outliers[0].metrics


def test_runs_of_outlier_transitions_name_the_shared_frames() -> None:
    def frames_of(flags: str) -> list[int]:
        flagged = np.array([c == "x" for c in flags])
        return audit.transitions_to_frames(flagged, len(flags) + 1)

    assert frames_of("..xx...") == [3]  # one bad frame: both its transitions
    assert frames_of("..xxx..") == [3, 4]  # two bad frames in a row
    assert frames_of("...x...") == [4]  # a jump: the first frame after it
    assert frames_of("x......") == [0]  # a bad first frame has one transition
    assert frames_of("......x") == [7]  # and so has a bad last frame
    assert frames_of(".......") == []


def test_linear_latent_path_is_perfectly_smooth() -> None:
    rng = np.random.default_rng(0)
    start = rng.integers(-8, 8, size=(4, 8, 8)).astype(np.float32)
    step = rng.integers(-2, 3, size=(4, 8, 8)).astype(np.float32)
    latents = np.stack([start + f * step for f in range(10)])
    clip = np.repeat(texture(64, 64)[None], 10, axis=0)

    report = audit.audit_frames(clip, latents)

    assert report.latent_smoothness == 0.0
    assert report.latent_accel == [0.0] * 10


def test_latent_smoothness_is_scale_free_and_peaks_at_a_kink() -> None:
    rng = np.random.default_rng(0)
    start, step = rng.normal(size=(2, 4, 8, 8))
    latents = np.stack([start + f * step for f in range(10)])
    latents[5] += 3 * step

    smoothness, accel = audit.latent_path_smoothness(latents)
    scaled, _ = audit.latent_path_smoothness(1000.0 * latents)

    assert smoothness > 0
    assert scaled == pytest.approx(smoothness, rel=1e-9)
    assert int(np.argmax(accel)) == 5


def test_random_linear_latent_path_is_smooth_to_rounding() -> None:
    start, step = np.random.default_rng(2).normal(size=(2, 4, 8, 8))
    latents = np.stack([start + f * step for f in range(10)])
    assert audit.latent_path_smoothness(latents)[0] < 1e-20


def test_report_is_json_ready() -> None:
    clip = with_glitch(translating(frames=8), 4, "invert")
    latents = np.random.default_rng(0).normal(size=(8, 4, 8, 8)).astype(np.float32)

    data = json.loads(json.dumps(audit.audit_frames(clip, latents).to_dict(), allow_nan=False))

    assert data["flagged_frames"] == [4]
    assert data["outliers"][0]["frame"] == 4
    assert len(data["frame_diff"]) == len(data["warp_error"]) == len(data["occlusion"]) == 7
    assert len(data["luma_mean"]) == len(data["latent_accel"]) == 8
    assert data["params"]["outlier_k"] == audit.OUTLIER_K


def test_bad_inputs_raise() -> None:
    clip = translating(frames=4)
    with pytest.raises(ValueError, match="at least 2 frames"):
        audit.audit_frames(clip[:1])
    with pytest.raises(ValueError, match="one entry per frame"):
        audit.audit_frames(clip, np.zeros((3, 4, 8, 8)))
    with pytest.raises(ValueError, match="F×H×W×3"):
        audit.audit_frames(clip[..., 0])


def test_plot_marks_flagged_frames(tmp_path: Path) -> None:
    report = audit.audit_frames(with_glitch(translating(frames=8), 4, "noise"), np.ones((8, 4, 8, 8)))
    path = tmp_path / "scores.png"

    audit.plot_scores(report, path)

    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_command_audits_an_mp4_and_writes_a_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    video = tmp_path / "video.mp4"
    write_mp4(with_glitch(translating(frames=12, width=96), 6, "invert"), video, fps=7)
    plot = tmp_path / "scores.png"

    report = audit_command(video, plot=plot)

    out = capsys.readouterr().out
    assert report.flagged_frames == [6]
    assert "12 frames, 96×64" in out
    assert "flagged frames     6 (" in out
    assert plot.read_bytes().startswith(PNG_SIGNATURE)

    audit_command(video, json_out=True)
    assert json.loads(capsys.readouterr().out)["flagged_frames"] == [6]


def test_command_rejects_a_missing_video(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(typer.Exit) as exc_info:
        audit_command(tmp_path / "missing.mp4")
    assert exc_info.value.exit_code == 2
    assert "no such video file" in capsys.readouterr().err
