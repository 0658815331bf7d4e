"""What clients of hosted video APIs expect of a job: the whole job's percent, its place in the queue,
its own URLs, when result URLs expire, and deleting it."""

import itertools
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from api_schemas.resources import STAGE_SPANS, Progress
from jobstate.records import StoredArtifact, StoredResult
from jobstate.store import JobStore, failure
from service.settings import Settings
from storage.local import LocalStorage
from tests.service.conftest import AUTH_A, AUTH_B, assert_problem, upload_image

pytestmark = pytest.mark.anyio


async def new_job(client: httpx.AsyncClient, auth: dict = AUTH_A) -> dict:
    asset = await upload_image(client, auth)
    response = await client.post("/v1/jobs", json={"image": f"asset:{asset}"}, headers=auth)
    assert response.status_code == 202, response.text
    return response.json()


async def test_percent_crosses_the_stages_in_order_and_never_goes_back() -> None:
    reports = [("load", 0, 1), ("encode", 0, 1)]
    reports += [("denoise", i, 20) for i in range(21)]
    reports += [("decode", 0, 1), ("video", 0, 1), ("video", 1, 1), ("uploading", 0, 4), ("uploading", 4, 4)]
    percents = [Progress.of(*r).percent for r in reports]
    assert percents[0] == 0.0 and percents[-1] == 100.0
    assert all(b is not None and a is not None and b >= a for a, b in itertools.pairwise(percents))
    assert Progress.of("denoise", 10, 20).percent == 45.0  # half of denoising's 5..85
    assert Progress.of("fitting", 1, 2).percent is None  # a stage outside the list claims nothing
    spans = list(STAGE_SPANS.values())
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


async def test_job_resource_carries_percent(client: httpx.AsyncClient, store: JobStore) -> None:
    job = await new_job(client)
    assert job["progress"] is None
    store.mark_running(job["id"])
    store.progress(job["id"], "denoise", 10, 20)
    progress = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()["progress"]
    assert progress == {"stage": "denoise", "step": 10, "total": 20, "fraction": 0.5, "percent": 45.0}


async def test_queue_position_while_queued(client: httpx.AsyncClient, store: JobStore, sync_redis: redis.Redis) -> None:
    jobs = [await new_job(client) for _ in range(3)]
    assert [j["queue_position"] for j in jobs] == [0, 1, 2]
    # another tenant's job queues behind them on the same model's queue
    other = await new_job(client, AUTH_B)
    assert other["queue_position"] == 3
    # a worker takes the first task and starts it: the others move up, the running one has no place
    sync_redis.rpop("gpu.svd-xt")
    store.mark_running(jobs[0]["id"])
    listed = (await client.get("/v1/jobs", headers=AUTH_A)).json()["items"]
    assert [(j["status"], j["queue_position"]) for j in listed] == [("queued", 1), ("queued", 0), ("running", None)]
    # a task the broker pushed back re-serialized is still found by its job id
    task = sync_redis.rpop("gpu.svd-xt")
    assert task is not None
    sync_redis.rpush("gpu.svd-xt", task.replace(b'"body"', b'"body" '))
    got = (await client.get(f"/v1/jobs/{jobs[1]['id']}", headers=AUTH_A)).json()
    assert got["queue_position"] == 0
    # a queued job whose task is gone from the queue (delivered, not yet claimed) has no place
    sync_redis.delete("gpu.svd-xt")
    assert (await client.get(f"/v1/jobs/{jobs[2]['id']}", headers=AUTH_A)).json()["queue_position"] is None


async def test_urls_are_absolute_under_the_public_base_url(client: httpx.AsyncClient, settings: Settings) -> None:
    job = await new_job(client)
    base = f"{settings.public_base_url}/v1/jobs/{job['id']}"
    assert job["urls"] == {
        "get": base,
        "cancel": f"{base}/cancel",
        "events": f"{base}/events",
        "web": f"{settings.public_base_url}/playground#job={job['id']}",
    }
    # the URLs answer what they name
    got = await client.get(job["urls"]["get"], headers=AUTH_A)
    assert got.status_code == 200 and got.json()["id"] == job["id"]
    assert (await client.post(job["urls"]["cancel"], headers=AUTH_A)).json()["status"] == "canceled"


async def test_result_files_say_when_their_urls_expire(
    client: httpx.AsyncClient, store: JobStore, settings: Settings
) -> None:
    job = await new_job(client)
    store.mark_running(job["id"])
    key = f"jobs/tenant-a/{job['id']}/video.mp4"
    store.succeed(job["id"], StoredResult(video=StoredArtifact(key=key, content_type="video/mp4", bytes=3)))
    before = datetime.now(UTC)
    video = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()["result"]["video"]
    expires_at = datetime.fromisoformat(video["expires_at"])
    lifetime = timedelta(seconds=settings.presign_expiry_s)
    assert before + lifetime - timedelta(seconds=2) <= expires_at <= datetime.now(UTC) + lifetime
    # the URL itself names the same expiry (the local backend's `expires` query)
    exp = int(httpx.URL(video["url"]).params["expires"])
    assert 0 <= exp - expires_at.timestamp() <= 2


async def test_delete_removes_a_finished_job_and_its_files(
    client: httpx.AsyncClient, store: JobStore, settings: Settings, sync_redis: redis.Redis
) -> None:
    job = await new_job(client)
    local = LocalStorage(settings.storage_local_dir, secret="test-files-secret")
    key = f"jobs/tenant-a/{job['id']}/video.mp4"
    local.put(key, b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    store.mark_running(job["id"])
    store.succeed(job["id"], StoredResult(video=StoredArtifact(key=key, content_type="video/mp4", bytes=12)))

    assert_problem(await client.delete(f"/v1/jobs/{job['id']}", headers=AUTH_B), 404)  # another tenant's
    response = await client.delete(f"/v1/jobs/{job['id']}", headers=AUTH_A)
    assert response.status_code == 204 and response.content == b""
    assert not local.exists(key)
    assert_problem(await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A), 404)
    assert_problem(await client.delete(f"/v1/jobs/{job['id']}", headers=AUTH_A), 404)
    assert (await client.get("/v1/jobs", headers=AUTH_A)).json()["items"] == []
    assert sync_redis.hget("vsteer:stats:status", "succeeded") == b"0"  # the job counts no longer


async def test_delete_refuses_an_active_job_until_it_is_canceled(client: httpx.AsyncClient, store: JobStore) -> None:
    queued, running = await new_job(client), await new_job(client)
    store.mark_running(running["id"])
    for job, status in ((queued, "queued"), (running, "running")):
        body = assert_problem(await client.delete(f"/v1/jobs/{job['id']}", headers=AUTH_A), 409)
        assert status in body["detail"] and "cancel it first" in body["detail"]
    assert (await client.get(f"/v1/jobs/{running['id']}", headers=AUTH_A)).status_code == 200
    await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=AUTH_A)
    assert (await client.delete(f"/v1/jobs/{queued['id']}", headers=AUTH_A)).status_code == 204
    store.fail(running["id"], failure("Boom", "the worker failed"))
    assert (await client.delete(f"/v1/jobs/{running['id']}", headers=AUTH_A)).status_code == 204
