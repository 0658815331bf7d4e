"""`vsteer run` with a `text` direction source on the tiny model: the example job, the model spec's
`text_encoder` field, and a model without one."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vsteer.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "text-direction.json"


def spec_env(monkeypatch: pytest.MonkeyPatch, **spec: object) -> None:
    monkeypatch.setenv("VSTEER_MODELS", json.dumps({"tiny": spec}))
    monkeypatch.setenv("VSTEER_DEFAULT_MODEL", "tiny")


def test_the_text_direction_example_runs_and_replays_on_the_tiny_model(tiny_model_dir, monkeypatch, tmp_path):
    # The spec's `text_encoder` names the folder; the tiny model keeps its text tower beside its pipeline.
    folder = str(tiny_model_dir)
    spec_env(monkeypatch, source=folder, text_encoder=folder, width=64, height=64, num_frames=6)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(EXAMPLE), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (direction,) = manifest["steering"]["directions"]["directions"]
    assert direction["source"] == "text"
    assert (direction["text"], direction["from_text"]) == ("a bright sunny sky", "a dark cloudy sky")
    assert direction["sha256"].startswith("sha256:")
    assert manifest["model"]["text_encoder"]["source"] == folder

    # Replayed, the texts give the same direction and the same frames.
    again = tmp_path / "again"
    result = runner.invoke(app, ["replay", str(tmp_path / "out" / "manifest.json"), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert (again / "video.mp4").stat().st_size > 0
    replayed = json.loads((again / "manifest.json").read_text())["steering"]["directions"]["directions"][0]
    assert replayed["sha256"] == direction["sha256"]


def test_a_model_folder_brings_its_text_tower(tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("VSTEER_MODELS", raising=False)
    result = CliRunner().invoke(
        app, ["run", str(EXAMPLE), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir)], env=dict(os.environ)
    )
    assert result.exit_code == 0, result.output


def test_a_model_without_a_text_encoder_refuses_a_text_direction_naming_the_field(
    tiny_model_dir, monkeypatch, tmp_path
):
    spec_env(monkeypatch, source=str(tiny_model_dir), width=64, height=64, num_frames=6)
    result = CliRunner().invoke(app, ["run", str(EXAMPLE), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "directions[0].source.text" in result.output and "has no text encoder" in result.output
    assert "Traceback" not in result.output
