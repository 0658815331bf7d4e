"""`vsteer run` and `vsteer replay` through the real command line."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from vsteer.cli import app
from workers.video import probe


@pytest.fixture
def cli_env(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    models = json.dumps({"tiny": {"source": str(tiny_model_dir), "width": 64, "height": 64, "num_frames": 6}})
    monkeypatch.setenv("VSTEER_MODELS", models)
    return {**os.environ, "VSTEER_MODELS": models}


def write_job(folder: Path, image_paths: list[Path], **extra) -> Path:
    doc = {
        "seed": 11,
        "keyframes": [{"image": str(image_paths[0]), "at": 0.0}, {"image": image_paths[1].name, "at": 1.0}],
        "references": [{"image": str(image_paths[2]), "weight": 0.7}],
        "generation": {"num_frames": 6, "steps": 2, "width": 128, "height": 64},
        "output": {"raw": True},
        **extra,
    }
    # A relative path is read from the job file's folder.
    (folder / image_paths[1].name).write_bytes(image_paths[1].read_bytes())
    path = folder / "job.json"
    path.write_text(json.dumps(doc))
    return path


def test_run_writes_a_playable_video_and_replay_reproduces_the_frames(cli_env, image_paths, tmp_path):
    runner = CliRunner()
    job_file = write_job(tmp_path, image_paths)
    result = runner.invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output

    info = probe(tmp_path / "out" / "video.mp4")
    assert (info.codec, info.pix_fmt, info.width, info.height, info.frame_count) == (
        "h264",
        "yuv420p",
        128,
        64,
        6,
    )
    assert info.faststart
    for name in ("poster.png", "preview.gif", "manifest.json", "frames.npy"):
        assert (tmp_path / "out" / name).stat().st_size > 0

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["request"]["seed"] == 11
    assert manifest["request"]["generation"]["decode_chunk_size"] == 6
    assert manifest["request"]["keyframes"][1]["image"] == str((tmp_path / image_paths[1].name).resolve())
    assert set(manifest["timings"]) >= {"encode", "denoise", "decode", "outputs", "audit_tasks", "video_encode_tasks"}
    assert manifest["model"]["weight_hash"].startswith("sha256:")
    assert manifest["libraries"]["torch"] and manifest["libraries"]["diffusers"]

    result = runner.invoke(app, ["replay", str(tmp_path / "out" / "manifest.json"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    first = (tmp_path / "out" / "frames.npy").read_bytes()
    assert (tmp_path / "again" / "frames.npy").read_bytes() == first
    assert np.load(tmp_path / "again" / "frames.npy").shape == (6, 64, 128, 3)


def test_a_bidirectional_morph_is_recorded_and_replayed_frame_for_frame(cli_env, image_paths, tmp_path):
    runner = CliRunner()
    job_file = write_job(tmp_path, image_paths, interpolation="bidirectional")
    result = runner.invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["request"]["interpolation"] == "bidirectional"
    assert manifest["steering"]["interpolation"]["unet_calls_per_step"] == 2

    result = runner.invoke(app, ["replay", str(tmp_path / "out" / "manifest.json"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "frames.npy").read_bytes() == (tmp_path / "out" / "frames.npy").read_bytes()


def test_a_long_video_is_recorded_and_replayed_frame_for_frame(cli_env, image_paths, tmp_path):
    runner = CliRunner()
    segments = {"count": 2, "overlap": 2, "blend": "cosine", "images": [str(image_paths[3])]}
    job_file = write_job(tmp_path, image_paths, segments=segments)
    result = runner.invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["seed"] for s in manifest["segments"]["segments"]] == [11, 12]
    assert probe(tmp_path / "out" / "video.mp4").frame_count == 2 * 6 - 2

    result = runner.invoke(app, ["replay", str(tmp_path / "out" / "manifest.json"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "frames.npy").read_bytes() == (tmp_path / "out" / "frames.npy").read_bytes()


def replay_edited(image_paths: list[Path], tmp_path: Path, edit) -> Any:  # type: ignore[no-untyped-def]
    """Run a job, change its manifest with `edit`, replay it; returns the replay's CLI result."""
    runner = CliRunner()
    job_file = write_job(tmp_path, image_paths)
    assert runner.invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")]).exit_code == 0
    manifest_path = tmp_path / "out" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest))
    return runner.invoke(app, ["replay", str(manifest_path), "--out", str(tmp_path / "again")])


def test_replay_notices_different_frames(cli_env, image_paths, tmp_path):
    result = replay_edited(image_paths, tmp_path, lambda manifest: manifest["request"].update(seed=12))
    assert result.exit_code == 1
    assert "frames    DIFFERENT" in result.output
    assert "recorded" not in result.output  # same device, options, weights and request: nothing else to blame


def test_replay_names_what_differs_from_the_recorded_run(cli_env, image_paths, tmp_path):
    def edit(manifest: dict) -> None:
        manifest["model"].update(device="cuda:0", device_name="NVIDIA H100 80GB HBM3", dtype="float16")
        manifest["model"]["fast_path"]["cudnn_autotune"] = True
        manifest["libraries"]["torch"] = "2.0.0"
        manifest["request"]["generation"]["decode_chunk_size"] = None  # left unset: the replay resolves it again
        manifest["outputs"]["frames"]["sha256"] = "sha256:" + "0" * 64

    result = replay_edited(image_paths, tmp_path, edit)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "frames    DIFFERENT to the manifest's" in lines
    assert "recorded device 'cuda', now 'cpu'" in lines
    assert any(line.startswith("recorded device_name 'NVIDIA H100 80GB HBM3', now 'cpu") for line in lines)
    assert "recorded dtype 'float16', now 'float32'" in lines
    assert any(line.startswith("recorded fast_path.cudnn_autotune True, now False") for line in lines)
    assert any(line.startswith("recorded torch '2.0.0', now ") for line in lines)
    assert "recorded request.generation.decode_chunk_size None, now 6" in lines
    assert [line for line in lines if "request." in line] == [
        "recorded request.generation.decode_chunk_size None, now 6"
    ]
    assert not any("weight_hash" in line or "predates" in line for line in lines)


def test_an_invalid_document_exits_non_zero_naming_the_field(cli_env, image_paths, tmp_path):
    job_file = write_job(tmp_path, image_paths, generation={"num_frames": 6, "width": 100})
    proc = subprocess.run(
        [sys.executable, "-m", "vsteer.cli", "run", str(job_file), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "generation.width: Input should be a multiple of 64" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_rule_spanning_fields_names_the_field_to_change():
    from pydantic import ValidationError

    from api_schemas import JobRequest
    from vsteer.cli import format_validation_error

    keyframes = [{"image": "a.png", "at": 0.6}, {"image": "b.png", "at": 0.1}]
    for document, expected in [
        (
            {"image": "a.png", "generation": {"guidance": {"min": 4, "max": 2}}},
            "generation.guidance.min: `guidance.min`",
        ),
        ({"keyframes": keyframes}, "keyframes[1].at: `keyframes[1].at` must be greater"),
    ]:
        with pytest.raises(ValidationError) as raised:
            JobRequest.model_validate(document)
        assert expected in format_validation_error(raised.value)


def test_a_missing_image_fails_naming_the_field(cli_env, image_paths, tmp_path):
    job_file = write_job(tmp_path, image_paths, negative_image="nowhere.png")
    result = CliRunner().invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "negative_image: no such file" in result.output


def test_models_tiny_builds_a_folder_diffusers_loads(tmp_path):
    from diffusers import StableVideoDiffusionPipeline

    result = CliRunner().invoke(app, ["models", "tiny", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    pipe = StableVideoDiffusionPipeline.from_pretrained(tmp_path / "tiny")
    assert pipe.unet.config.in_channels == 8
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.scheduler.config.use_karras_sigmas


def test_unknown_model_fails_with_what_to_do(cli_env, image_paths, tmp_path):
    job_file = write_job(tmp_path, image_paths, model="svd-xt")
    result = CliRunner().invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "not in the local hub cache" in result.output
    assert "hf download stabilityai/stable-video-diffusion-img2vid-xt" in result.output


def test_replay_differences_of_a_manifest_that_predates_the_run_facts():
    from vsteer.cli import replay_differences

    old = {"model": {"dtype": "float32"}, "libraries": {"torch": "2.13.0"}, "request": {"seed": 1}}
    new = {
        "model": {"dtype": "float32", "device": "cpu", "device_name": "cpu x86_64", "fast_path": {"compile": False}},
        "libraries": {"torch": "2.13.0"},
        "request": {"seed": 1, "model": "other-name"},
    }
    assert replay_differences(old, new) == [
        "the recorded run did not record its fast-path options (its manifest predates them)"
    ]
    assert replay_differences(new, new) == []


def test_the_manifest_records_the_anchor_a_job_was_merged_from(cli_env, image_paths, tmp_path):
    citation = {"id": "anc_look", "version": 3, "sha256": "ab" * 32}
    job_file = write_job(tmp_path, image_paths, anchor=citation, output={"raw": False, "preview": "none"})
    result = CliRunner().invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["request"]["anchor"] == citation


def test_an_anchor_not_merged_yet_needs_the_service(cli_env, image_paths, tmp_path):
    job_file = write_job(tmp_path, image_paths, anchor="anc_look@3")
    result = CliRunner().invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "anchor: anchor set 'anc_look@3' is merged by the service" in result.output


def test_a_model_folder_named_like_a_registered_model_is_that_folder(cli_env, image_paths, tmp_path):
    # A copy of the tiny SVD with other weights, in a folder named `tiny` like the registered model.
    from workers.tiny import save_tiny_svd

    folder = save_tiny_svd(tmp_path / "tiny", seed=1)
    job_file = write_job(tmp_path, image_paths, generation={"num_frames": 4, "steps": 2})
    result = CliRunner().invoke(app, ["run", str(job_file), "--out", str(tmp_path / "out"), "--model", str(folder)])
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "out" / "manifest.json").read_text())["model"]
    assert model["source"] == str(folder.resolve())
    assert model["name"].startswith("tiny-") and model["name"] != "tiny"


def test_a_missing_model_folder_is_one_line_of_error(cli_env, image_paths, tmp_path):
    job_file = write_job(tmp_path, image_paths)
    result = CliRunner().invoke(app, ["run", str(job_file), "--model", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "is neither a registered model" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
