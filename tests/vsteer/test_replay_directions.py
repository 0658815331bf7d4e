"""The manifest records what each direction was read from; `vsteer replay` refuses a stored direction
that changed or went missing, before running anything."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vsteer.cli import app
from workers.directions import direction_digest, save_direction


@pytest.fixture
def cli_env(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = json.dumps({"tiny": {"source": str(tiny_model_dir), "width": 64, "height": 64, "num_frames": 4}})
    monkeypatch.setenv("VSTEER_MODELS", models)


def test_replay_refuses_a_stored_direction_that_changed(cli_env, image_paths, tmp_path: Path) -> None:
    folder = tmp_path / "directions"
    stored = save_direction(folder, "dir_warm", torch.tensor([1.0, 0.0, 0.0, 0.0]), {"space": "latent"})
    inline = [0.0, 1.0, 0.0, 0.0]
    doc = {
        "seed": 3,
        "image": str(image_paths[0]),
        "generation": {"num_frames": 4, "steps": 2, "width": 64, "height": 64},
        "directions": [
            {"source": {"id": "dir_warm"}, "space": "latent", "strength": 0.5},
            {"source": {"vector": inline}, "space": "latent", "strength": 0.2},
        ],
    }
    (tmp_path / "job.json").write_text(json.dumps(doc))
    runner = CliRunner()
    ran = runner.invoke(
        app, ["run", str(tmp_path / "job.json"), "--directions", str(folder), "--out", str(tmp_path / "out")]
    )
    assert ran.exit_code == 0, ran.output

    manifest_path = tmp_path / "out" / "manifest.json"
    recorded = json.loads(manifest_path.read_text())["steering"]["directions"]["directions"]
    assert recorded[0]["sha256"] == "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest()
    assert recorded[1]["sha256"] == direction_digest(torch.tensor(inline))

    def replay() -> object:
        return runner.invoke(
            app, ["replay", str(manifest_path), "--directions", str(folder), "--out", str(tmp_path / "again")]
        )

    same = replay()
    assert same.exit_code == 0, same.output  # unchanged: the frames replay
    # The same direction stored again under that id, changed:
    save_direction(folder, "dir_warm", torch.tensor([0.0, 0.0, 1.0, 0.0]), {"space": "latent"})
    changed = replay()
    assert changed.exit_code == 2
    assert "directions[0].source" in changed.output and "changed since the recorded run" in changed.output
    assert recorded[0]["sha256"] in changed.output
    assert "identical" not in changed.output and "DIFFERENT" not in changed.output  # refused before running

    os.remove(stored)
    missing = replay()
    assert missing.exit_code == 2 and "is missing" in missing.output
