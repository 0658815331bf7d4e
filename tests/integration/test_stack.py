"""The one-command local stack and the README's demo: real processes, started and stopped by `vsteer.stack`."""

import json
import logging
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from api_schemas import JobStatus
from storage.s3 import S3Storage
from tests.conftest import data_uri, make_image
from tests.servers import start_moto
from vsteer.client import Client
from vsteer.demo import demo_command, run_demo
from vsteer.pictures import png_bytes, smooth_picture
from vsteer.stack import start_stack
from vsteer.supervisor import Backoff
from workers.video import probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def stack_env(tiny_model_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSTEER_")}
    env["VSTEER_CACHE_DIR"] = str(tiny_model_dir.parent)
    env["VSTEER_DEFAULT_MODEL"] = "tiny"  # the fastest; the demo's test runs the default, the toy model
    return env


def test_demo_runs_the_toy_model_by_default_and_writes_a_playable_mp4_and_its_manifest(
    tmp_path, stack_env, monkeypatch, capsys
):
    for key in [k for k in os.environ if k.startswith("VSTEER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VSTEER_CACHE_DIR", stack_env["VSTEER_CACHE_DIR"])
    out = tmp_path / "out"

    demo_command(out=out, model=None, size=64, frames=None, steps=None, timeout=240)

    info = probe(out / "video.mp4")
    assert (info.codec, info.frame_count, info.width, info.height) == ("h264", 8, 64, 64)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["name"] == "toy" and manifest["request"]["generation"]["steps"] == 25
    assert len(manifest["request"]["keyframes"]) == 2
    assert manifest["request"]["references"][0]["weight"] == 0.5
    assert "submitted job_" in capsys.readouterr().out


def test_stack_serves_local_files_and_stops_every_process(tmp_path, stack_env):
    stack = start_stack(env=stack_env, webhooks=False)
    children = list(stack.children)
    try:
        assert [c.name for c in children] == ["redis", "api", "worker"]
        with Client(stack.url, stack.api_key) as client:
            job = run_demo(client, tmp_path, model="tiny", size=64, frames=3, steps=2, timeout_s=240)
            # Local storage: the URLs are the API's signed /v1/files links.
            assert job.result.video.url.startswith(f"{stack.url}/v1/files/jobs/local/{job.id}/video.mp4?")
            tampered = job.result.video.url.replace("sig=", "sig=0")
            assert httpx.get(tampered).status_code == 404
        assert probe(tmp_path / "video.mp4").frame_count == 3
    finally:
        stack.stop()
    assert all(not c.alive() for c in children)
    assert not stack.state_dir.exists()


def test_a_state_folder_keeps_jobs_and_files_across_restarts(tmp_path, stack_env):
    state = tmp_path / "state"
    with (
        start_stack(env=stack_env, webhooks=False, state_dir=state) as stack,
        Client(stack.url, stack.api_key) as client,
    ):
        job = run_demo(client, tmp_path / "first", model="tiny", size=64, frames=3, steps=1, timeout_s=240)

    with (
        start_stack(env=stack_env, webhooks=False, state_dir=state) as again,
        Client(again.url, again.api_key) as client,
    ):
        kept = client.get(job.id)
        assert kept.status == job.status and kept.result is not None
        assert [j.id for j in client.iter_jobs()] == [job.id]
        client.download(kept, tmp_path / "second")
    assert (tmp_path / "second" / "video.mp4").read_bytes() == (tmp_path / "first" / "video.mp4").read_bytes()
    assert state.is_dir()  # a given folder is the caller's: the stack leaves it


def test_stack_uses_s3_when_configured(tmp_path, stack_env):
    moto = start_moto(tmp_path)
    try:
        env = {
            **stack_env,
            "VSTEER_STORAGE_BACKEND": "s3",
            "VSTEER_STORAGE_S3_BUCKET": "stack-bucket",
            "VSTEER_STORAGE_S3_ENDPOINT_URL": moto.url,
            "VSTEER_STORAGE_S3_ACCESS_KEY_ID": "testing",
            "VSTEER_STORAGE_S3_SECRET_ACCESS_KEY": "testing",
        }
        with start_stack(env=env, webhooks=False) as stack:
            assert httpx.get(f"{stack.url}/readyz").json()["checks"]["storage"] == "ok"
            with Client(stack.url, stack.api_key) as client:
                job = run_demo(client, tmp_path, model="tiny", size=64, frames=3, steps=1, timeout_s=240)
            assert job.result.video.url.startswith(f"{moto.url}/stack-bucket/jobs/local/{job.id}/video.mp4?")
        store = S3Storage("stack-bucket", endpoint_url=moto.url, access_key_id="t", secret_access_key="t")
        assert store.info(f"jobs/local/{job.id}/manifest.json").content_type == "application/json"
    finally:
        moto.stop()


def child_pid(parent: int, word: str) -> int:
    """The child process of `parent` whose command line holds `word`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and word.encode() in cmdline:
            return int(stat.parent.name)
    raise LookupError(f"no child of {parent} runs {word!r}")


def test_up_command_prints_the_url_restarts_a_killed_api_and_stops_everything_on_sigterm(tmp_path, stack_env):
    import subprocess
    import sys

    from tests.servers import free_port, port_open, wait_for

    port = free_port()
    log = tmp_path / "up.log"
    code = "import typer; from vsteer.stack import up_command; typer.run(up_command)"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "--port",
                str(port),
                "--state-dir",
                str(tmp_path / "state"),
                "--host",
                "0.0.0.0",
                "--second-key",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=stack_env,
            cwd=Path(__file__).resolve().parents[2],
        )
    try:
        wait_for(lambda: "Ctrl-C stops everything." in log.read_text(), 180, "vsteer up", log)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}" in text and "API key:" in text
        assert "webhooks: signed with the development secret" in text and "loopback receivers allowed" in text
        key = text.split("API key:", 1)[1].split()[0]
        models = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(models, headers={"Authorization": f"Bearer {key}"}).is_success
        # The docs are named, and a second tenant's key sees none of the first tenant's assets.
        assert f"API docs: http://127.0.0.1:{port}/docs" in text
        assert httpx.get(f"http://127.0.0.1:{port}/docs").is_success
        other = text.split("API key:", 2)[2].split()[0]
        assert other != key and "(tenant local-2" in text
        picture = {"file": ("p.png", png_bytes(smooth_picture(0, (64, 64))), "image/png")}
        asset = httpx.post(
            f"http://127.0.0.1:{port}/v1/assets", files=picture, headers={"Authorization": f"Bearer {key}"}
        )
        assert asset.status_code == 201, asset.text
        peek = f"http://127.0.0.1:{port}/v1/assets/{asset.json()['id']}"
        assert httpx.get(peek, headers={"Authorization": f"Bearer {other}"}).status_code == 404
        assert httpx.get(peek, headers={"Authorization": f"Bearer {key}"}).status_code == 200

        # A killed API is reported and started again on its port.
        os.kill(child_pid(up.pid, "uvicorn"), signal.SIGKILL)
        wait_for(lambda: "api started again" in log.read_text(), 30, "the API's restart", log)
        assert "api killed by signal SIGKILL after" in log.read_text()
        assert str(tmp_path / "state" / "logs" / "api.log") in log.read_text()
        wait_for(lambda: port_open("127.0.0.1", port), 60, "the API's port", log)
        wait_for(lambda: httpx.get(models, headers={"Authorization": f"Bearer {key}"}).is_success, 60, "API", log)

        # SIGTERM, and a second one while it stops (a process manager and `timeout` both sending one,
        # or Ctrl-C pressed twice): every process it started still goes.
        children = [child_pid(up.pid, word) for word in ("redis-server", "uvicorn", "workers.celery_app", "cpu_app")]
        up.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
        time.sleep(0.5)
        assert not port_open("127.0.0.1", port)
        assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
        assert (tmp_path / "state" / "logs" / "worker.log").exists()  # a given state dir is kept
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)


def small_job(seed: int, steps: int) -> dict:
    return {
        "model": "tiny",
        "seed": seed,
        "image": data_uri(make_image(5)),
        "generation": {"num_frames": 3, "width": 64, "height": 64, "steps": steps},
        "output": {"preview": "none"},
    }


def test_a_worker_killed_mid_job_is_started_again_and_its_job_succeeds(tmp_path, stack_env, caplog):
    caplog.set_level(logging.INFO, logger="vsteer.supervisor")
    env = {
        **stack_env,
        # A killed worker's message comes back after the broker's visibility timeout, counted from its
        # delivery; the settings want it above the job time limit plus the queue wait, so all are short.
        "VSTEER_JOB_TIME_LIMIT_S": "20",
        "VSTEER_MAX_QUEUE_WAIT_S": "0",
        "VSTEER_VISIBILITY_TIMEOUT_S": "21",
        "VSTEER_REDELIVERY_CHECK_S": "1",
    }
    with (
        start_stack(env=env, webhooks=False, backoff=Backoff(first_s=0.5)) as stack,
        Client(stack.url, stack.api_key) as client,
    ):
        worker = stack.child("worker")
        killed_pid = worker.pid
        others = {c.name: c.pid for c in stack.children if c is not worker}
        job = client.submit(small_job(3, steps=30))

        # 1. the worker dies in the middle of denoising
        deadline = time.monotonic() + 120
        while (current := client.get(job.id)).progress is None or current.progress.stage != "denoise":
            assert time.monotonic() < deadline and not current.status.is_terminal(), (current, worker.tail())
            time.sleep(0.05)
        os.kill(killed_pid, signal.SIGKILL)

        # 2. the supervisor starts it again; the job's message comes back to it and the job finishes
        done = client.wait(job.id, timeout=180)
        assert done.status is JobStatus.succeeded, (done.error, worker.tail())
        assert worker.restarts == 1 and worker.alive() and worker.pid != killed_pid
        assert [e.describe() for e in worker.exits] == ["killed by signal SIGKILL"]
        assert "worker killed by signal SIGKILL after" in caplog.text and str(worker.log) in caplog.text
        assert "--- vsteer: worker killed by signal SIGKILL; started again ---" in worker.tail(1_000_000)

        # 3. the rest of the stack never went down
        assert {c.name: c.pid for c in stack.children if c is not worker} == others
        assert all(c.alive() and c.restarts == 0 for c in stack.children if c is not worker)
        assert httpx.get(f"{stack.url}/healthz").is_success
    assert not stack.state_dir.exists()  # a normal stop still removes a temporary state folder


def test_a_killed_redis_is_started_again_with_its_data(tmp_path, stack_env):
    with (
        start_stack(env=stack_env, webhooks=False, backoff=Backoff(first_s=0.5)) as stack,
        Client(stack.url, stack.api_key) as client,
    ):
        before = client.wait(client.submit(small_job(1, steps=1)).id, timeout=120)
        assert before.status is JobStatus.succeeded
        time.sleep(1.5)  # the append-only file is written to disk every second
        redis = stack.child("redis")
        os.kill(redis.pid, signal.SIGKILL)

        deadline = time.monotonic() + 30
        while not (redis.restarts == 1 and httpx.get(f"{stack.url}/readyz").is_success):
            assert time.monotonic() < deadline, redis.tail()
            time.sleep(0.1)
        kept = client.get(before.id)  # its result URLs are signed anew on each read
        assert (kept.status, kept.finished_at, kept.result.video.sha256) == (
            before.status,
            before.finished_at,
            before.result.video.sha256,
        )
        # The worker reconnects to the new redis-server and takes the next job.
        after = client.wait(client.submit(small_job(2, steps=1)).id, timeout=120)
        assert after.status is JobStatus.succeeded, (after.error, stack.child("worker").tail())
        assert [c.restarts for c in stack.children] == [1, 0, 0]
