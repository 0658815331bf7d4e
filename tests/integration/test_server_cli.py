"""`vsteer jobs …` / `vsteer assets …` against the running service, as a user types them."""

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import make_image
from tests.integration.conftest import API_KEY, Service
from vsteer.client import VsteerError
from vsteer.pictures import png_bytes
from workers.video import probe

SMALL = {"num_frames": 4, "width": 64, "height": 64, "steps": 2}

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def vsteer(*args: str, server: Service | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSTEER_")}
    if server is not None:
        env |= {"VSTEER_URL": server.url, "VSTEER_API_KEY": API_KEY}
    return subprocess.run(
        [sys.executable, "-m", "vsteer.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_submit_uploads_local_images_once_and_downloads_a_playable_video(service: Service, tmp_path):
    # A document naming local files, one of them twice, relative to the document's folder.
    make_image(1).save(tmp_path / "first.png")
    make_image(2).save(tmp_path / "last.png")
    doc = {
        "model": "tiny",
        "seed": 3,
        "keyframes": [{"image": "first.png", "at": 0.0}, {"image": "last.png", "at": 1.0}],
        "references": [{"image": "first.png", "weight": 0.5}],
        "generation": {"num_frames": 4, "width": 64, "height": 64, "steps": 2},
    }
    (tmp_path / "job.json").write_text(json.dumps(doc))
    out = tmp_path / "out"

    done = vsteer("jobs", "submit", "job.json", "--download", str(out), "--json", server=service, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    uploads = [line for line in done.stderr.splitlines() if line.startswith("uploaded")]
    assert len(uploads) == 2  # first.png once, though the document names it twice
    job = json.loads(done.stdout[done.stdout.index("{") :])
    assert job["status"] == "succeeded"
    assert job["request"]["keyframes"][0]["image"] == job["request"]["references"][0]["image"]
    assert job["request"]["keyframes"][0]["image"].startswith("asset:")
    info = probe(out / "video.mp4")
    assert info.frame_count == 4 and (info.width, info.height) == (64, 64)

    # The other commands read the same job.
    got = vsteer("jobs", "get", job["id"], server=service)
    assert got.returncode == 0 and got.stdout.split()[:2] == [job["id"], "succeeded"]
    listed = vsteer("jobs", "list", "--limit", "5", server=service)
    assert job["id"] in listed.stdout
    again = vsteer("jobs", "download", job["id"], str(tmp_path / "again"), server=service)
    assert again.returncode == 0 and (tmp_path / "again" / "manifest.json").is_file()

    # Deleted, the job is gone.
    deleted = vsteer("jobs", "delete", job["id"], server=service)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted {job['id']}"
    gone = vsteer("jobs", "get", job["id"], server=service)
    assert gone.returncode == 1 and "404" in gone.stderr


def test_errors_are_one_line_naming_the_field(service: Service, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"image": "missing.png", "generation": {"steps": 0}}))
    bad = vsteer("jobs", "submit", "bad.json", server=service, cwd=tmp_path)
    assert bad.returncode == 2
    assert "generation.steps" in bad.stderr and "Traceback" not in bad.stderr

    (tmp_path / "absent.json").write_text(json.dumps({"image": "missing.png"}))
    absent = vsteer("jobs", "submit", "absent.json", server=service, cwd=tmp_path)
    assert absent.returncode == 2
    assert absent.stderr.startswith("error: image: no such file") and "Traceback" not in absent.stderr

    unknown = vsteer("jobs", "get", "job_doesnotexist", server=service)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error:") and "404" in unknown.stderr

    wrong_key = vsteer("jobs", "list", "--server", service.url, "--key", "not-a-key")
    assert wrong_key.returncode == 1 and "401" in wrong_key.stderr

    nobody = vsteer("jobs", "list", "--server", "http://127.0.0.1:9", "--key", "k")
    assert nobody.returncode == 3 and nobody.stderr.startswith("error: cannot reach")


def test_assets_upload_and_get(service: Service, tmp_path):
    make_image(4).save(tmp_path / "picture.png")
    uploaded = vsteer("assets", "upload", str(tmp_path / "picture.png"), server=service)
    assert uploaded.returncode == 0, uploaded.stderr
    asset = uploaded.stdout.split()[0]
    assert asset.startswith("asset:ast_")
    got = vsteer("assets", "get", asset, "--json", server=service)
    assert json.loads(got.stdout)["width"] == 80
    listed = vsteer("assets", "list", "--limit", "1", server=service)
    assert listed.returncode == 0 and listed.stdout.split()[:2] == [asset, "image/png"], listed.stdout


def test_version():
    shown = vsteer("--version")
    assert shown.returncode == 0 and shown.stdout.startswith("vsteer ")


def test_worker_log_holds_no_library_chatter(service: Service):
    # The worker's log is a file: no torchvision notice from transformers, no carriage-return progress bars.
    log = service.log("worker")
    assert "gpu." in log  # the log is the worker's and it got going
    assert "requires torchvision" not in log
    assert "\r" not in log


def test_an_image_named_by_url_is_fetched_by_the_worker(service: Service, tmp_path):
    import http.server
    import threading

    make_image(5).save(tmp_path / "cat.png")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://localhost:{httpd.server_address[1]}/cat.png"
    try:
        with service.client() as client:
            job = client.submit({"model": "tiny", "seed": 1, "image": url, "generation": SMALL})
            job = client.wait(job.id, timeout=120)
            assert job.status.value == "succeeded", job.error
            assert job.request.image == url
            missing = client.submit({"model": "tiny", "image": url.replace("cat", "dog"), "generation": SMALL})
            missing = client.wait(missing.id, timeout=120)
            assert missing.status.value == "failed" and missing.error is not None
            assert missing.error.field == "image" and "answered 404" in (missing.error.detail or "")
            with pytest.raises(VsteerError) as refused:
                client.submit({"model": "tiny", "image": "s3://bucket/cat.png", "generation": SMALL})
            assert refused.value.problem.errors[0].rule == "http_url"
    finally:
        httpd.shutdown()


def test_a_direction_uploaded_with_the_cli_steers_a_job_on_the_worker(service: Service, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"direction": torch.tensor([1.0, 0.0, 0.0, -1.0])}, tmp_path / "warm.safetensors")
    made = vsteer(
        "directions", "upload", str(tmp_path / "warm.safetensors"), "--space", "latent",
        "--name", "warm", "--json", server=service,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    direction = json.loads(made.stdout)
    assert direction["dimension"] == 4 and direction["name"] == "warm"
    assert direction["model"] == "tiny"  # no --model: the server's default model
    assert direction["id"] in vsteer("directions", "list", server=service).stdout

    with service.client() as client:
        asset = client.upload_asset(tmp_path / "p.png", data=png_bytes(make_image(6))).id
        steer = {"source": {"id": direction["id"]}, "space": "latent", "strength": 0.5}
        job = client.submit({"model": "tiny", "image": f"asset:{asset}", "directions": [steer], "generation": SMALL})
        job = client.wait(job.id, timeout=120)
        assert job.status.value == "succeeded", job.error

    gone = vsteer("directions", "delete", direction["id"], server=service)
    assert gone.returncode == 0
    again = vsteer("directions", "show", direction["id"], server=service)
    assert again.returncode == 1 and "404" in again.stderr
