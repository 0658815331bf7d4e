"""Comparisons on real servers: one API knowing three models, one GPU worker serving all three (the
tiny SVD registered under three names with different default sizes and frame counts), and the CPU
worker that composes the side-by-side."""

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from api_schemas import JobStatus
from jobstate.comparisons import get_comparison_op
from jobstate.redis_keys import comparison_record_key
from jobstate.store import JobStore
from storage.s3 import S3Storage
from tests.conftest import make_image
from tests.integration.conftest import start_worker
from tests.servers import start_moto, start_redis, start_uvicorn
from vsteer.client import AsyncClient, Client, VsteerError
from vsteer.pictures import png_bytes
from workers.video import probe, read_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KEY, OTHER_KEY = "compare-key", "compare-other-key"
BUCKET = "vsteer-comparisons"
# name → (width, height, num_frames): what a job that leaves them out renders on that model
SIZES = {"tiny": (64, 64, 6), "tiny-b": (128, 64, 4)}
# A model whose default size needs more host memory than the worker has: its jobs fail (507).
TOO_BIG = "tiny-huge"
HOST_MEMORY_BYTES = 1 << 30


@dataclass
class Stack:
    url: str
    logs: Path
    redis_url: str

    def client(self, key: str = KEY) -> Client:
        return Client(self.url, key)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("comparisons")
    logs = root / "logs"
    logs.mkdir()
    stops = []
    try:
        redis = start_redis(root)
        stops.append(redis.stop)
        s3 = start_moto(root)
        stops.append(s3.stop)
        S3Storage(BUCKET, endpoint_url=s3.url, access_key_id="testing", secret_access_key="testing").ensure_bucket()
        common = {
            "VSTEER_ENVIRONMENT": "test",
            "VSTEER_REDIS_URL": redis.url,
            "VSTEER_STORAGE_BACKEND": "s3",
            "VSTEER_STORAGE_S3_BUCKET": BUCKET,
            "VSTEER_STORAGE_S3_ENDPOINT_URL": s3.url,
            "VSTEER_STORAGE_S3_ACCESS_KEY_ID": "testing",
            "VSTEER_STORAGE_S3_SECRET_ACCESS_KEY": "testing",
            "VSTEER_DEFAULT_MODEL": "tiny",
        }
        specs = {name: {"source": str(tiny_model_dir), "width": w, "height": h, "num_frames": f}
                 for name, (w, h, f) in SIZES.items()}  # fmt: skip
        specs[TOO_BIG] = {"source": str(tiny_model_dir), "width": 2048, "height": 2048, "num_frames": 25}
        gpu_env = {**common, "VSTEER_MODELS": json.dumps(specs), "VSTEER_HOST_MEMORY_BYTES": str(HOST_MEMORY_BYTES)}
        queues = [f"gpu.{name}" for name in specs]
        worker = start_worker("workers.celery_app", queues, logs / "worker.log", gpu_env)
        stops.append(worker.stop)
        cpu = start_worker("workers.cpu_app", ["webhooks", "cpu"], logs / "cpu.log", common, "threads")
        stops.append(cpu.stop)
        api_env = {
            **common,
            "VSTEER_MODELS": json.dumps(list(specs)),
            "VSTEER_DEV_API_KEYS": json.dumps({KEY: "acme", OTHER_KEY: "globex"}),
        }
        api = start_uvicorn(logs / "api.log", env=api_env)
        stops.append(api.stop)
        yield Stack(api.url, logs, redis.url)
    finally:
        for stop in reversed(stops):
            stop()


def picture(client: Client) -> str:
    buffer = io.BytesIO()
    make_image(3, (96, 80)).save(buffer, format="PNG")
    return f"asset:{client.upload_asset('picture.png', data=buffer.getvalue()).id}"


def test_two_models_side_by_side(stack: Stack, tmp_path: Path) -> None:
    with stack.client() as client:
        job = {"image": picture(client), "generation": {"steps": 2}, "output": {"fps": 4}}
        comparison = client.compare(["tiny", "tiny-b"], job)
        assert comparison.status in (JobStatus.queued, JobStatus.running)
        assert [c.model for c in comparison.children] == ["tiny", "tiny-b"]

        done = client.wait_comparison(comparison.id, timeout=300)
        assert done.status is JobStatus.succeeded, (done.error, done.failed)
        assert [c.status for c in done.children] == [JobStatus.succeeded, JobStatus.succeeded]
        assert done.failed == []

        # 1. one seed for both children, each on its own model, each at its model's size
        children = [client.get(c.job_id) for c in done.children]
        assert {c.request.seed for c in children} == {done.seed}
        assert [c.model for c in children] == ["tiny", "tiny-b"]
        for child in children:
            files = client.download(child, tmp_path / child.id, names=["video"])
            info = probe(files["video"])
            width, height, frames = SIZES[child.model]
            assert (info.width, info.height, info.frame_count) == (width, height, frames)

        # 2. the side-by-side: one column per model, each padded to the largest clip, labels on top
        files = client.download_comparison(done, tmp_path / "comparison")
        info = probe(files["video"])
        cell_w = max(w for w, _, _ in SIZES.values())
        assert info.width == len(SIZES) * cell_w == 256
        assert info.height > max(h for _, h, _ in SIZES.values())
        # aligned in time: as long as the longest clip (6 frames at 4 fps), both at 4 fps
        assert info.frame_count == max(f for _, _, f in SIZES.values())
        frames = read_frames(files["video"])
        label_rows = frames[0, :12]
        assert label_rows[:, :cell_w].std() > 0.05 and label_rows[:, cell_w:].std() > 0.05  # text drawn
        # tiny's 64-wide clip sits centred in its 128-wide cell: the padding beside it is black
        assert frames[:, 20:, :24].max() < 0.1

        # 3. the contact sheet and the table of audit figures and timings
        with Image.open(files["contact_sheet"]) as sheet:
            assert sheet.format == "PNG" and sheet.width == info.width and sheet.height > info.height
        table = done.result.table
        assert [row.model for row in table] == ["tiny", "tiny-b"]
        for row, child in zip(table, children, strict=True):
            width, height, frames_n = SIZES[row.model]
            assert (row.width, row.height, row.num_frames) == (width, height, frames_n)
            audit = child.result.metrics["audit"]
            assert row.flicker == pytest.approx(audit["flicker"])
            assert row.warp_error == pytest.approx(audit["warp_error_mean"])
            assert row.flagged_frames == audit["flagged_frames"]
            assert row.timings and all(np.isfinite(v) for v in row.timings.values())

        # 4. asking again does not compose again: the same files, their URLs good for the presign expiry
        again = client.get_comparison(done.id)
        assert again.result.video.sha256 == done.result.video.sha256
        for stored in (again.result.video, again.result.contact_sheet):
            assert stored.expires_at is not None and stored.expires_at > datetime.now(UTC), stored


def test_the_side_by_side_is_made_without_being_asked_for(stack: Stack) -> None:
    """Nobody reads the comparison while its children run: the API's reaper loop queues the composition."""
    with stack.client() as client:
        job = {"image": picture(client), "generation": {"steps": 2}}
        comparison = client.compare(["tiny", "tiny-b"], job)
        for child in comparison.children:
            assert client.wait(child.job_id, timeout=300).status is JobStatus.succeeded
    store = JobStore.from_url(stack.redis_url)
    deadline = time.monotonic() + 60
    record = None
    while time.monotonic() < deadline:
        record = store.run(get_comparison_op("acme", comparison.id))
        if record is not None and record.compose == "succeeded":
            break
        time.sleep(0.2)
    assert record is not None and record.compose == "succeeded", record
    # the record expires after the deployment's retention (30 days by default), counted from the end
    ttl = store.redis.ttl(comparison_record_key("acme", comparison.id))
    assert 30 * 86400 - 120 <= ttl <= 30 * 86400, ttl
    with stack.client() as client:
        assert client.get_comparison(comparison.id).status is JobStatus.succeeded
        with pytest.raises(VsteerError) as refused:  # nothing left to cancel: 409, as for a finished job
            client.cancel_comparison(comparison.id)
        assert refused.value.status == 409 and "already succeeded" in str(refused.value)


def test_cancel_cancels_every_child(stack: Stack) -> None:
    with stack.client() as client:
        job = {"image": picture(client), "generation": {"steps": 40}}
        comparison = client.compare(["tiny", "tiny-b"], job)
        canceled = client.cancel_comparison(comparison.id)
        assert canceled.status in (JobStatus.running, JobStatus.canceled)
        done = client.wait_comparison(comparison.id, timeout=120)
        assert done.status is JobStatus.canceled
        assert [client.get(c.job_id).status for c in done.children] == [JobStatus.canceled, JobStatus.canceled]
        assert done.result is None


def test_a_failed_child_leaves_the_other(stack: Stack, tmp_path: Path) -> None:
    with stack.client() as client:
        job = {"image": picture(client), "generation": {"steps": 2}, "seed": 5}
        comparison = client.compare([TOO_BIG, "tiny"], job)
        done = client.wait_comparison(comparison.id, timeout=300)
        statuses = {c.model: c.status for c in done.children}
        assert statuses == {TOO_BIG: JobStatus.failed, "tiny": JobStatus.succeeded}
        assert done.seed == 5
        # the comparison says which child failed and why; the side-by-side has the one that succeeded
        assert [c.model for c in done.failed] == [TOO_BIG]
        assert done.failed[0].error is not None and done.failed[0].error.status == 507
        assert done.status is JobStatus.succeeded
        rows = {row.model: row for row in done.result.table}
        assert rows[TOO_BIG].status is JobStatus.failed and rows[TOO_BIG].error.status == 507
        assert rows["tiny"].flicker is not None
        info = probe(client.download_comparison(done, tmp_path)["video"])
        assert info.width == SIZES["tiny"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"models": ["tiny"]}, "models"),
        ({"models": ["tiny", "tiny"]}, "models"),
        ({"models": ["tiny", "nope"]}, "models[1]"),
    ],
)
def test_invalid_comparisons_name_the_field(stack: Stack, body: dict, field: str) -> None:
    with stack.client() as client:
        document = {**body, "job": {"image": picture(client), "generation": {"steps": 2}}}
        response = httpx.post(f"{stack.url}/v1/comparisons", json=document, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_another_tenants_comparison_is_not_found(stack: Stack) -> None:
    with stack.client() as client:
        job = {"image": picture(client), "generation": {"steps": 2}}
        comparison = client.compare(["tiny", "tiny-b"], job)
    with stack.client(OTHER_KEY) as other:
        for call in (other.get_comparison, other.cancel_comparison):
            with pytest.raises(VsteerError) as caught:
                call(comparison.id)
            assert caught.value.status == 404


def test_cli_compares_the_example_sweep_and_downloads_it(stack: Stack, tmp_path: Path) -> None:
    """`vsteer compare submit` with the example (a seed sweep of 2 clips, local images uploaded first)
    on two models: each child renders the sweep, and the side-by-side shows each child's sweep video."""
    example = ROOT / "examples" / "compare.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSTEER_")}
    env |= {"VSTEER_URL": stack.url, "VSTEER_API_KEY": KEY}
    argv = [
        sys.executable,
        "-m",
        "vsteer.cli",
        "compare",
        "submit",
        str(example),
        "--model",
        "tiny",
        "--model",
        "tiny-b",
    ]
    out = subprocess.run(
        [*argv, "--download", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "succeeded" in out.stdout.splitlines()[0]
    assert (tmp_path / "contact_sheet.png").is_file()
    table = json.loads((tmp_path / "table.json").read_text())
    assert [row["model"] for row in table] == ["tiny", "tiny-b"]
    comparison_id = out.stdout.split()[0]
    with stack.client() as client:
        comparison = client.get_comparison(comparison_id)
        for child in comparison.children:
            job = client.get(child.job_id)
            assert job.request.sweep is not None and len(job.result.clips) == 2
    # each column holds its child's contact sheet of 2 clips side by side (sweep videos tile in a row)
    info = probe(tmp_path / "video.mp4")
    assert info.width == 2 * max(2 * w for w, _, _ in SIZES.values())

    # a bad invocation is one line naming what is wrong, exit 2
    missing = subprocess.run(
        [sys.executable, "-m", "vsteer.cli", "compare", "submit", str(example.parent / "morph.json")],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert missing.returncode == 2 and "--model" in missing.stderr


def test_the_async_client_compares_too(stack: Stack) -> None:
    async def run() -> None:
        async with AsyncClient(stack.url, KEY) as client:
            image = f"asset:{(await client.upload_asset('p.png', data=png_bytes(make_image(4)))).id}"
            comparison = await client.compare(["tiny", "tiny-b"], {"image": image, "generation": {"steps": 2}})
            done = await client.wait_comparison(comparison.id, timeout=300)
            assert done.status is JobStatus.succeeded and done.result is not None
            assert (await client.get_comparison(done.id)).seed == comparison.seed

    asyncio.run(run())
