"""The service end to end on real servers: HTTP in, a Celery worker running the tiny SVD, S3 out."""

import asyncio
import base64
import io
import json
import time
from urllib.parse import urlsplit

import httpx
import pytest

from api_schemas import JobResource, JobStatus
from tests.conftest import make_image
from tests.integration.conftest import WEBHOOK_SECRET, Service
from vsteer.client import AsyncClient, Client, VsteerError
from webhooks.signing import verify
from workers.video import probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAMES, SIZE = 4, 64


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_image(seed, (96, 80)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_pictures(client: Client, count: int = 3) -> list[str]:
    return [client.upload_asset(f"picture{k}.png", data=png(k)).id for k in range(count)]


def steering_job(assets: list[str], steps: int, **extra) -> dict:
    return {
        "model": "tiny",
        "seed": 11,
        "keyframes": [{"image": f"asset:{assets[0]}", "at": 0.0}, {"image": f"asset:{assets[1]}", "at": 1.0}],
        "interpolation": "slerp",
        "references": [{"image": f"asset:{assets[2]}", "weight": 0.7}],
        "generation": {"num_frames": FRAMES, "width": SIZE, "height": SIZE, "steps": steps},
        "output": {"preview": "gif"},
        **extra,
    }


def test_steering_job_end_to_end(service: Service, tmp_path):
    with service.client() as client:
        assets = upload_pictures(client)
        request = steering_job(assets, steps=6, webhook={"url": service.receiver.url, "events": ["completed"]})

        job = client.submit(request)
        assert job.status in (JobStatus.queued, JobStatus.running)

        # 1. progress is visible while the job runs: the denoising step goes up
        seen: list[JobResource] = []
        # Followed as server-sent events: every step is delivered, however fast the tiny model runs.
        job = client.wait(job.id, timeout=240, on_progress=seen.append, stream=True)
        assert job.status is JobStatus.succeeded, job.error
        denoising = [j for j in seen if j.status is JobStatus.running and j.progress and j.progress.stage == "denoise"]
        steps = [j.progress.step for j in denoising]
        assert len(set(steps)) >= 2, [(j.status, j.progress) for j in seen]
        assert steps == sorted(steps)

        # 2. the result's URLs are presigned URLs of the S3 server
        video_url = urlsplit(job.result.video.url)
        assert f"{video_url.scheme}://{video_url.netloc}" == service.s3.url
        assert video_url.path.endswith(f"/jobs/acme/{job.id}/video.mp4")
        assert "X-Amz-Signature=" in video_url.query

        # 3. the MP4 decodes with the requested frame count and size (downloads check sha256)
        files = client.download(job, tmp_path)
        info = probe(files["video"])
        assert (info.frame_count, info.width, info.height) == (FRAMES, SIZE, SIZE)
        assert info.codec == "h264" and info.faststart
        assert {"video", "poster", "preview", "manifest"} <= set(files)

        # 4. the manifest is there and records the request
        manifest = json.loads(files["manifest"].read_text())
        assert manifest["job_id"] == job.id
        recorded = manifest["request"]
        assert recorded["keyframes"] == request["keyframes"]
        assert recorded["references"] == request["references"]
        assert recorded["interpolation"] == "slerp"
        assert recorded["seed"] == 11
        for name, value in request["generation"].items():
            assert recorded["generation"][name] == value

    # 5. the webhook arrives, signed
    hooks = service.receiver.wait_for(job.id)
    assert hooks, service.log("webhooks")[-3000:]
    [hook] = hooks
    assert verify(
        WEBHOOK_SECRET,
        hook.headers["webhook-id"],
        hook.headers["webhook-timestamp"],
        hook.body,
        hook.headers["webhook-signature"],
    )
    assert not verify(
        WEBHOOK_SECRET,
        hook.headers["webhook-id"],
        hook.headers["webhook-timestamp"],
        hook.body + b" ",
        hook.headers["webhook-signature"],
    )
    payload = json.loads(hook.body)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["status"] == "succeeded"


def test_an_inline_image_job_runs_from_its_asset_announces_its_start_and_is_deleted(service: Service):
    inline = "data:image/png;base64," + base64.b64encode(png(5)).decode()
    hook = {"url": service.receiver.url, "events": ["started", "succeeded"]}
    document = {
        "model": "tiny",
        "seed": 3,
        "image": inline,
        "generation": {"num_frames": FRAMES, "width": SIZE, "height": SIZE, "steps": 2},
        "output": {"preview": "none"},
        "webhook": hook,
    }
    with service.client() as client:
        job = client.submit(document)
        assert job.request.image is not None and job.request.image.startswith("asset:")
        assert job.urls is not None and job.urls.get.endswith(f"/v1/jobs/{job.id}")
        job = client.wait(job.id, timeout=240)
        assert job.status is JobStatus.succeeded, job.error
        assert job.progress is not None and job.progress.percent == 100.0
        assert job.result is not None and job.result.video is not None and job.result.video.expires_at is not None

        # the worker's webhooks: the start, then the success; neither carries the image
        deadline = time.monotonic() + 30
        while (
            len(
                bodies := [
                    b for b in (json.loads(r.body) for r in service.receiver.received) if b["data"]["id"] == job.id
                ]
            )
            < 2
        ):
            assert time.monotonic() < deadline, service.log("webhooks")[-3000:]
            time.sleep(0.1)
        assert sorted(b["type"] for b in bodies) == ["job.started", "job.succeeded"]
        assert all("data:image" not in json.dumps(b) for b in bodies)

        # deleted: the record and the result files
        video_url = job.result.video.url
        client.delete(job.id)
        with pytest.raises(VsteerError) as gone:
            client.get(job.id)
        assert gone.value.status == 404
        assert httpx.get(video_url).status_code == 404


def test_cancel_a_running_job_then_the_same_worker_runs_the_next(service: Service):
    worker_pid = service.worker.process.proc.pid
    with service.client() as client:
        assets = upload_pictures(client)
        job = client.submit(steering_job(assets, steps=60))

        # 1. wait until it is denoising, then cancel
        deadline = time.monotonic() + 240
        while True:
            current = client.get(job.id)
            if current.progress is not None and current.progress.stage == "denoise" and current.progress.step >= 2:
                break
            assert current.status in (JobStatus.queued, JobStatus.running), current
            assert time.monotonic() < deadline, "the job never started denoising"
            time.sleep(0.05)
        step_at_cancel = current.progress.step
        answered = client.cancel(job.id)
        assert answered.status in (JobStatus.running, JobStatus.canceled)

        # 2. it stops within a few steps
        final = client.wait(job.id, timeout=120)
        assert final.status is JobStatus.canceled
        assert final.progress.stage == "denoise"
        assert final.progress.step <= step_at_cancel + 3, (step_at_cancel, final.progress)
        assert final.result is None

        # 3. the same worker process completes the next job
        nxt = client.wait(client.submit(steering_job(assets, steps=2)).id, timeout=240)
        assert nxt.status is JobStatus.succeeded, nxt.error
        assert service.worker.process.alive() and service.worker.process.proc.pid == worker_pid


def test_async_client_lists_and_reads_jobs(service: Service):
    async def scenario() -> None:
        async with AsyncClient(service.url, "integration-key") as client:
            page = await client.list(limit=5)
            assert page.items, "earlier tests submitted jobs"
            newest = page.items[0]
            again = await client.get(newest.id)
            assert again.id == newest.id
            models = await client.models()
            assert [m.name for m in models.items] == ["tiny"]
            assert models.items[0].warm_workers

    asyncio.run(scenario())


def test_wait_on_server_sent_events_sees_every_step(service: Service):
    async def scenario() -> JobResource:
        async with AsyncClient(service.url, "integration-key") as client:
            with service.client() as sync_client:
                assets = upload_pictures(sync_client)
            job = await client.submit(steering_job(assets, steps=5))
            seen: list[JobResource] = []
            final = await client.wait(job.id, timeout=240, on_progress=seen.append, stream=True)
            steps = [j.progress.step for j in seen if j.progress and j.progress.stage == "denoise"]
            # Events carry every step from the moment the stream opened, in order.
            assert steps and steps[-1] == 5
            assert steps == list(range(steps[0], 6))
            return final

    final = asyncio.run(scenario())
    assert final.status is JobStatus.succeeded
    with service.client() as client:
        again = client.wait(final.id, timeout=10, stream=True)
        assert again.status is JobStatus.succeeded


def test_api_errors_carry_problem_details(service: Service):
    with service.client() as client:
        with pytest.raises(VsteerError) as missing:
            client.get("job_0000000000000000000000000000")
        assert missing.value.status == 404
        assert missing.value.problem.type.endswith("/not-found")
    with Client(service.url, "wrong-key") as stranger, pytest.raises(VsteerError) as denied:
        stranger.list()
    assert denied.value.status == 401


def test_a_job_citing_an_anchor_set_runs_merged_and_its_manifest_cites_it(service: Service, tmp_path):
    with service.client() as client:
        assets = upload_pictures(client)
        generation = {"num_frames": FRAMES, "width": SIZE, "height": SIZE, "steps": 2}
        anchor = client.create_anchor(
            {
                "name": "e2e",
                "seed": 5,
                "references": [{"image": f"asset:{assets[2]}", "weight": 0.7}],
                "generation": generation,
            }
        )
        job = client.submit(
            {"model": "tiny", "image": f"asset:{assets[0]}", "anchor": anchor.id, "generation": {"steps": 3}}
        )
        job = client.wait(job.id, timeout=240)
        assert job.status is JobStatus.succeeded, job.error
        # the finished job and its manifest need the anchor set no more
        client.delete_anchor(anchor.id)
        files = client.download(client.get(job.id), tmp_path, ["manifest", "video"])
        recorded = json.loads(files["manifest"].read_text())["request"]
        assert recorded["anchor"] == {"id": anchor.id, "version": 1, "sha256": anchor.sha256}
        assert recorded["seed"] == 5 and recorded["references"] == [{"image": f"asset:{assets[2]}", "weight": 0.7}]
        assert recorded["generation"]["steps"] == 3 and recorded["generation"]["num_frames"] == FRAMES
        assert probe(files["video"]).frame_count == FRAMES
