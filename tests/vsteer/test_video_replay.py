"""`vsteer run` of a video edit reads the clip from a path relative to the job file, and `vsteer replay`
reproduces it frame for frame from the manifest."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vsteer.cli import app
from vsteer.pictures import panning_clip


@pytest.fixture
def cli_env(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = json.dumps({"tiny": {"source": str(tiny_model_dir), "width": 64, "height": 64, "num_frames": 6}})
    monkeypatch.setenv("VSTEER_MODELS", models)


def test_a_video_edit_runs_from_a_relative_path_and_replays_frame_for_frame(cli_env, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(panning_clip(2, (80, 64), frames=16, fps=8))
    doc = {
        "seed": 4,
        "video": {"source": "clip.mp4", "strength": 0.5, "start": 0.25, "fit": "pad", "noise": "inverted"},
        "generation": {"num_frames": 4, "steps": 4, "fps": 8},
        "output": {"raw": True, "preview": "none"},
    }
    (tmp_path / "job.json").write_text(json.dumps(doc))
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(tmp_path / "job.json"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["request"]["video"]["source"] == str((tmp_path / "clip.mp4").resolve())
    assert manifest["steering"]["video"]["first_step"] == 2
    assert manifest["inputs"]["video.source"]["source_frames"] == [2, 3, 4, 5]

    result = runner.invoke(app, ["replay", str(tmp_path / "out" / "manifest.json"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert "frames    identical" in result.output
    assert (tmp_path / "again" / "frames.npy").read_bytes() == (tmp_path / "out" / "frames.npy").read_bytes()
