"""A job's outputs after the decode, written side by side: the same files whatever the thread count."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from api_schemas import JobRequest
from workers import outputs
from workers.settings import EngineSettings


def moving_clips(clips: int = 2, frames: int = 6, height: int = 64, width: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    video = [
        [
            np.stack([(x + 3 * f + 20 * k) / (width + 60), y / height, 0.5 + 0.4 * np.sin((x - y + 2 * f) / 9)], -1)
            for f in range(frames)
        ]
        for k in range(clips)
    ]
    return np.clip(np.asarray(video, dtype=np.float32), 0, 1)


def sweep_job() -> JobRequest:
    return JobRequest.model_validate(
        {
            "image": "asset:a",
            "sweep": {"target": "seed", "to": 9, "count": 2},
            "output": {"raw": True, "preview": "gif", "fps": 7},
        }
    )


def digests(files: dict[str, Path]) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}


def test_files_and_audits_do_not_depend_on_the_thread_count(tmp_path: Path) -> None:
    frames = moving_clips()
    latents = np.random.default_rng(0).standard_normal((2, 6, 4, 8, 12)).astype(np.float32)

    one = outputs.finish_outputs(frames, latents, sweep_job(), tmp_path / "one", threads=1)
    many = outputs.finish_outputs(frames, latents, sweep_job(), tmp_path / "many", threads=6)

    audits, files, busy = many
    assert set(files) == {"clips/0", "clips/1", "video", "poster", "preview", "frames"}
    assert all(path.is_relative_to(tmp_path / "many") and path.stat().st_size > 0 for path in files.values())
    assert digests(files) == digests(one[1])
    assert audits == one[0] and len(audits) == 2
    assert busy.keys() == {"audit_tasks", "video_encode_tasks"} and min(busy.values()) > 0
    np.testing.assert_array_equal(np.load(files["frames"]), frames)


def test_a_failing_output_fails_the_job(tmp_path: Path) -> None:
    odd = moving_clips(clips=1, width=95)  # H.264 in yuv420p needs an even width
    job = JobRequest.model_validate({"image": "asset:a", "output": {"fps": 7}})
    with pytest.raises(ValueError, match="even"):
        outputs.finish_outputs(odd, np.zeros((1, 6, 4, 8, 12), np.float32), job, tmp_path, threads=2)


def test_thread_count_comes_from_the_environment_or_the_cpus() -> None:
    assert outputs.output_threads(EngineSettings(output_threads="3").output_threads) == 3
    assert outputs.output_threads(None) >= 1
    assert outputs.output_threads(None) <= outputs.DEFAULT_MAX_THREADS
    for bad in ("0", "-2", "two", "1.5", "²"):
        with pytest.raises(ValueError, match="VSTEER_OUTPUT_THREADS must be a positive integer"):
            outputs.output_threads(EngineSettings(output_threads=bad).output_threads)


def test_a_bad_thread_count_fails_a_job_before_its_gpu_work(
    registry, image_paths: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.engine import run_job
    from workers.images import ImageResolver

    monkeypatch.setenv("VSTEER_OUTPUT_THREADS", "0")
    job = JobRequest.model_validate({"image": str(image_paths[0]), "generation": {"steps": 2}})
    stages: list = []
    # The settings are read once, before any job: the bad value stops them there.
    with pytest.raises(ValueError, match="VSTEER_OUTPUT_THREADS must be a positive integer, got '0'"):
        settings = EngineSettings()
        run_job(
            job,
            tmp_path,
            registry=registry,
            images=ImageResolver(allow_paths=True),
            on_progress=stages.append,
            settings=settings,
        )
    assert stages == []  # nothing was loaded, encoded or denoised
