"""The GPU worker's liveness signal: its heartbeat thread touches `VSTEER_HEARTBEAT_FILE` on every
beat, Redis up or down, and `python -m workers.liveness` reads the file's age (the Kubernetes probes
in deploy/k8s run it)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobstate.store import JobStore
from workers import celery_app
from workers.liveness import heartbeat_age, main


def run_beat(deps: SimpleNamespace, beat_file: Path, beats: int, every_s: float = 0.05) -> None:
    """The worker's heartbeat loop for about `beats` beats, then stopped as at worker shutdown."""
    celery_app._stop_heartbeat.clear()
    thread = threading.Thread(target=celery_app._heartbeat, args=(deps, "gpu0@test", every_s, beat_file))
    thread.start()
    time.sleep(every_s * beats)
    celery_app._stop_heartbeat.set()
    thread.join(5)
    assert not thread.is_alive()


def beat_deps(redis_url: str) -> SimpleNamespace:
    return SimpleNamespace(
        store=JobStore.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1),
        registry=SimpleNamespace(warm_names=lambda: ["tiny"]),
        current_job=None,
    )


def test_the_heartbeat_touches_its_file_and_reports_the_warm_model(tmp_path: Path, redis_url: str):
    beat_file = tmp_path / "heartbeat"
    deps = beat_deps(redis_url)
    run_beat(deps, beat_file, beats=3)
    assert beat_file.exists() and heartbeat_age(beat_file) < 5
    assert deps.store.warm_workers("tiny") == ["gpu0@test"]
    assert main([str(beat_file), "--max-age", "30"]) == 0


def test_the_file_is_touched_while_redis_is_unreachable(tmp_path: Path):
    beat_file = tmp_path / "heartbeat"
    # nothing listens on port 1: every Redis call of the beat fails and is logged
    run_beat(beat_deps("redis://127.0.0.1:1/0"), beat_file, beats=2)
    assert beat_file.exists()


def test_a_missing_or_stale_file_fails_the_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    beat_file = tmp_path / "heartbeat"
    assert main([str(beat_file)]) == 1
    assert "does not exist" in capsys.readouterr().err
    beat_file.touch()
    old = time.time() - 120
    os.utime(beat_file, (old, old))
    assert main([str(beat_file), "--max-age", "60"]) == 1
    assert "last touched 120 s ago" in capsys.readouterr().err
    assert main([str(beat_file), "--max-age", "300"]) == 0
    with pytest.raises(SystemExit):
        main([str(beat_file), "--max-age", "0"])


def test_the_probe_runs_as_a_module_without_loading_the_engine(tmp_path: Path):
    beat_file = tmp_path / "heartbeat"
    beat_file.touch()
    code = (
        "import runpy, sys; sys.argv = ['liveness', sys.argv[1]]\n"
        "try:\n    runpy.run_module('workers.liveness', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules and 'celery' not in sys.modules, 'the probe loaded the engine'\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(beat_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    beat_file.unlink()
    missing = subprocess.run(
        [sys.executable, "-m", "workers.liveness", str(beat_file)], capture_output=True, timeout=60
    )
    assert missing.returncode == 1
