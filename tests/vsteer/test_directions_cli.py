"""`vsteer directions fit` on the tiny model: files, metadata, leakage, and use in a job."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from typer.testing import CliRunner

from vsteer.cli import app


@pytest.fixture
def cli_env(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = {"tiny": {"source": str(tiny_model_dir), "width": 64, "height": 64, "num_frames": 6}}
    monkeypatch.setenv("VSTEER_MODELS", json.dumps(models))


def brightness_images(folder: Path, n: int) -> tuple[list[Path], list[float]]:
    rng = np.random.default_rng(0)
    paths, levels = [], []
    for i in range(n):
        level = float(rng.random())
        texture = rng.random((16, 16, 3)) * 0.3
        pixels = np.clip(texture + level * 0.7, 0, 1)
        path = folder / f"b{i}.png"
        PIL.Image.fromarray((pixels * 255).astype(np.uint8)).resize((64, 64)).save(path)
        paths.append(path)
        levels.append(level)
    return paths, levels


@pytest.mark.parametrize("method", ["pca", "probe", "supervised"])
def test_fit_writes_directions_with_metadata_and_leakage(method, cli_env, tmp_path):
    paths, levels = brightness_images(tmp_path, 12)
    args = ["directions", "fit", "--method", method, "--out", str(tmp_path / "dirs"), "--name", "dir_bright"]
    args += [x for p in paths for x in ("--images", str(p))]
    if method == "pca":
        args += ["--k", "2"]
    else:
        args += ["--labels", ",".join(f"{v:.4f}" for v in levels)]
    if method != "probe":  # the probe's set is measured without labelled attributes
        args += ["--attribute", "brightness=" + ",".join(f"{v:.4f}" for v in levels)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    count = 2 if method == "pca" else 1
    for i in range(count):
        meta = json.loads((tmp_path / "dirs" / f"dir_bright_{i}.json").read_text())
        assert meta["method"] == method and meta["space"] == "embedding" and meta["dimension"] == 32
        assert meta["model"]["weight_hash"].startswith("sha256:")
        # A supervised direction is stored with its predictor, which jobs evaluate at each frame.
        from safetensors.torch import load_file

        stored = load_file(tmp_path / "dirs" / f"dir_bright_{i}.safetensors")
        if method == "supervised":
            assert meta["evaluated"] == "gradient_per_frame"
            assert "predictor.hidden.weight" in stored and stored["predictor.hidden.weight"].shape == (32, 32)
        else:
            assert meta["evaluated"] == "fixed" and set(stored) == {"direction"}
        report = meta["leakage"]
        if method == "probe":
            # No labelled attributes: the report says so instead of a figure that ignores the data.
            assert report["measured"] is False and "attributes" in report["reason"]
            assert "leakage not measured" in result.output
            continue
        assert report["measured"] is True and report["attributes"] == ["brightness"]
        assert len(report["leakage"]) == 1 and len(report["leakage"][0]) == count
        assert max(abs(v) for v in report["leakage"][0]) == pytest.approx(1.0)
        assert (report["mig"] is None) == (count == 1)
        assert "leakage of brightness" in result.output


def test_contrastive_direction_is_the_mean_pair_difference(cli_env, tiny_model_dir, tmp_path):
    from workers.models import ModelRegistry
    from workers.settings import EngineSettings

    paths, _ = brightness_images(tmp_path, 8)
    (tmp_path / "pairs.txt").write_text("\n".join(f"{paths[i]},{paths[i + 4]}" for i in range(4)))
    result = CliRunner().invoke(
        app,
        [
            *("directions", "fit", "--method", "contrastive", "--pairs", str(tmp_path / "pairs.txt")),
            *("--out", str(tmp_path / "dirs"), "--name", "dir_pair"),
        ],
    )
    assert result.exit_code == 0, result.output

    from safetensors.torch import load_file

    got = load_file(tmp_path / "dirs" / "dir_pair_0.safetensors")["direction"]
    pipe = ModelRegistry.from_settings(EngineSettings()).get("tiny").pipeline
    with torch.no_grad():
        emb = torch.stack([pipe.encode_image_embedding(PIL.Image.open(p).convert("RGB")) for p in paths]).double()
    want = (emb[:4] - emb[4:]).mean(dim=0)
    want = want / want.norm()
    assert torch.nn.functional.cosine_similarity(got.double(), want, dim=0) > 0.9999


@pytest.mark.parametrize(("method", "evaluated"), [("probe", "fixed"), ("supervised", "gradient_per_frame")])
def test_fitted_direction_runs_in_a_job_by_id(method, evaluated, cli_env, image_paths, tmp_path):
    paths, levels = brightness_images(tmp_path, 6)
    args = ["directions", "fit", "--method", method, "--out", str(tmp_path / "dirs"), "--name", "dir_b"]
    args += [x for p in paths for x in ("--images", str(p))] + ["--labels", ",".join(map(str, levels))]
    assert CliRunner().invoke(app, args).exit_code == 0

    from api_schemas import JobRequest
    from workers.directions import DirectionResolver
    from workers.engine import run_job
    from workers.images import ImageResolver
    from workers.models import ModelRegistry
    from workers.settings import EngineSettings

    job = JobRequest.model_validate(
        {
            "seed": 1,
            "image": str(image_paths[0]),
            "generation": {"num_frames": 4, "steps": 2},
            "directions": [{"source": {"id": "dir_b_0"}, "strength": {"from": 0, "to": 2}}],
        }
    )
    outputs = run_job(
        job,
        tmp_path / "out",
        registry=ModelRegistry.from_settings(EngineSettings()),
        images=ImageResolver(allow_paths=True),
        directions=DirectionResolver.from_folder(tmp_path / "dirs"),
    )
    assert outputs.files["video"].stat().st_size > 0
    (entry,) = json.loads(outputs.files["manifest"].read_text())["steering"]["directions"]["directions"]
    assert entry["evaluated"] == evaluated


def test_fit_refuses_missing_labels(cli_env, tmp_path):
    paths, _ = brightness_images(tmp_path, 3)
    args = ["directions", "fit", "--method", "probe"] + [x for p in paths for x in ("--images", str(p))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--labels is required" in result.output


def test_images_may_follow_one_option_as_a_shell_glob_gives_them(cli_env, tmp_path):
    paths, _ = brightness_images(tmp_path, 4)
    out = tmp_path / "dirs"
    args = ["directions", "fit", "--method", "pca", "--out", str(out), "--name", "dir_glob", "--images"]
    result = CliRunner().invoke(app, [*args, *map(str, paths)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "dir_glob_0.json").read_text())["images"] == [str(p) for p in paths]
    stray = CliRunner().invoke(app, [*args, str(paths[0]), "--imagez", str(paths[1])])
    assert stray.exit_code != 0
