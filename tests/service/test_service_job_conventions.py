"""What clients of hosted video APIs expect of a job: the whole job's percent, its place in the queue,
its own URLs, when result URLs expire, and deleting it."""

import base64
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from api_schemas.resources import STAGE_SPANS, Progress
from jobstate.records import StoredArtifact, StoredResult
from jobstate.redis_keys import status_stats_key, tenant_shard
from jobstate.store import JobStore, failure
from service.app import create_app
from service.openapi import openapi_document
from service.settings import Settings
from storage.local import LocalStorage
from tests.service.conftest import AUTH_A, AUTH_B, assert_problem, make_settings, open_client, png, upload_image

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
    assert sync_redis.hget(status_stats_key(tenant_shard("tenant-a")), "succeeded") == b"0"  # the job counts no longer


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


async def test_submit_takes_json_only_and_an_empty_body_names_the_missing_field(client: httpx.AsyncClient) -> None:
    document = b'{"image": "asset:x"}'
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"):
        response = await client.post("/v1/jobs", content=document, headers={**AUTH_A, "content-type": media})
        body = assert_problem(response, 415, field="content-type")
        assert "application/json" in body["detail"] and media.split(";")[0] in body["detail"]
        assert [(e["field"], e["rule"]) for e in body["errors"]] == [("content-type", "media_type")]
    for headers in ({"content-type": "application/json"}, {}):
        response = await client.post("/v1/jobs", content=b"", headers={**AUTH_A, **headers})
        body = assert_problem(response, 422, field="image")
        assert body["errors"][0]["rule"] == "missing" and "empty" in body["detail"]
    # a body that declares no media type is not taken for JSON
    body = assert_problem(await client.post("/v1/jobs", content=document, headers=AUTH_A), 415)
    assert "got `none`" in body["detail"]
    # JSON with parameters, or under a +json name, is JSON
    for media in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await client.post("/v1/jobs", content=b"{}", headers={**AUTH_A, "content-type": media})
        assert assert_problem(response, 422, field="image")["errors"][0]["rule"] == "image_or_keyframes"
    # authentication still comes first
    assert_problem(await client.post("/v1/jobs", content=document, headers={"content-type": "text/plain"}), 401)


async def test_a_string_where_a_number_goes_is_422(client: httpx.AsyncClient) -> None:
    asset = await upload_image(client)
    doc = {"image": f"asset:{asset}", "variation": {"seed": 1, "strength": "0.5"}}
    body = assert_problem(await client.post("/v1/jobs", json=doc, headers=AUTH_A), 422, field="variation.strength")
    assert body["errors"][0]["rule"] == "float_type"
    doc["variation"] = {"seed": 1, "strength": 1}  # a JSON integer is a number
    assert (await client.post("/v1/jobs", json=doc, headers=AUTH_A)).status_code == 202


async def test_the_openapi_document_says_what_the_api_answers(tmp_path: Path, redis_url: str) -> None:
    document = openapi_document()
    (limit,) = [p for p in document["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "limit"]
    assert limit["schema"]["maximum"] == 100
    assert "415" in document["paths"]["/v1/jobs"]["post"]["responses"]
    assert "204" in document["paths"]["/v1/jobs/{job_id}"]["delete"]["responses"]
    assert {"400", "415"} <= set(document["paths"]["/v1/assets"]["post"]["responses"])
    assert "image_or_keyframes" in document["components"]["schemas"]["JobRequest"]["properties"]["image"]["description"]
    # a deployment documents its own page limit, and answers by it
    app = create_app(make_settings(tmp_path, redis_url, list_limit_max=7))
    for path in ("/v1/jobs", "/v1/anchors"):
        (limit,) = [p for p in app.openapi()["paths"][path]["get"]["parameters"] if p["name"] == "limit"]
        assert limit["schema"]["maximum"] == 7, path
    async for client in open_client(app):
        for path in ("/v1/jobs", "/v1/anchors"):
            assert (await client.get(f"{path}?limit=7", headers=AUTH_A)).status_code == 200
            assert_problem(await client.get(f"{path}?limit=8", headers=AUTH_A), 422, field="limit")


async def test_the_answers_the_document_lists(client: httpx.AsyncClient) -> None:
    malformed = {**AUTH_A, "content-type": "multipart/form-data; boundary=xyz"}
    assert_problem(await client.post("/v1/assets", content=b"garbage", headers=malformed), 400)
    two = [{"image": "asset:b", "at": 0}, {"image": "asset:c", "at": 1}]
    response = await client.post("/v1/jobs", json={"image": "asset:a", "keyframes": two}, headers=AUTH_A)
    assert assert_problem(response, 422, field="keyframes")["errors"][0]["rule"] == "image_or_keyframes"


async def test_inline_images_are_stored_as_assets_and_cited(
    client: httpx.AsyncClient, store: JobStore, settings: Settings
) -> None:
    inline = "data:image/png;base64," + base64.b64encode(png(32, 16)).decode()
    doc = {
        "keyframes": [{"image": inline, "at": 0}, {"image": inline, "at": 1}],
        "references": [{"image": inline, "weight": 0.5}],
    }
    response = await client.post("/v1/jobs", json=doc, headers=AUTH_A)
    assert response.status_code == 202, response.text
    job = response.json()
    refs = {k["image"] for k in job["request"]["keyframes"]} | {job["request"]["references"][0]["image"]}
    (ref,) = refs  # one image, given three times, stored once
    assert ref.startswith("asset:ast_")
    asset = (await client.get(f"/v1/assets/{ref.removeprefix('asset:')}", headers=AUTH_A)).json()
    assert (asset["kind"], asset["content_type"], asset["width"], asset["height"]) == ("image", "image/png", 32, 16)
    local = LocalStorage(settings.storage_local_dir, secret="test-files-secret")
    assert local.get(f"assets/tenant-a/{asset['id']}") == png(32, 16)
    # neither the resource, the list, nor a webhook carries the bytes
    assert "data:" not in (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).text
    assert "data:" not in (await client.get("/v1/jobs", headers=AUTH_A)).text
    record = store.get_any(job["id"])
    assert record is not None and "data:" not in json.dumps(record.request)
    # another tenant cannot use the stored image
    theirs = await client.post("/v1/jobs", json={"image": ref}, headers=AUTH_B)
    assert assert_problem(theirs, 422, field="image")["errors"][0]["rule"] == "unknown_asset"


async def test_a_method_no_route_answers_is_405_naming_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    job = await new_job(client)
    response = await client.request("PUT", f"/v1/jobs/{job['id']}", headers=AUTH_A)
    assert_problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET"
    response = await client.request("PATCH", "/v1/jobs", headers=AUTH_A)
    assert assert_problem(response, 405) and response.headers["allow"] == "GET, POST"


async def test_a_body_that_cannot_be_read_is_400_and_documented(client: httpx.AsyncClient) -> None:
    not_utf8 = {**AUTH_A, "content-type": "application/json"}
    assert_problem(await client.post("/v1/jobs", content=b'{"image": "\xff"}', headers=not_utf8), 400)
    assert_problem(await client.post("/v1/anchors", content=b'{"name": "\xff"}', headers=not_utf8), 400)
    document = openapi_document()
    for path in ("/v1/jobs", "/v1/anchors", "/v1/anchors/{anchor_id}/versions", "/v1/assets"):
        assert "400" in document["paths"][path]["post"]["responses"], path
    # the schema says a job has `image`, `keyframes` or a `video` to edit, never both image and keyframes
    schema = document["components"]["schemas"]["JobRequest"]
    assert [s["required"] for s in schema["anyOf"]] == [["image"], ["keyframes"], ["video"]]
    assert [s["required"] for s in schema["not"]["allOf"]] == [["image"], ["keyframes"]]


async def test_an_idempotency_key_whose_job_was_deleted_makes_a_new_job(client: httpx.AsyncClient) -> None:
    asset = await upload_image(client)
    headers = {**AUTH_A, "Idempotency-Key": "k-1"}
    first = (await client.post("/v1/jobs", json={"image": f"asset:{asset}"}, headers=headers)).json()
    again = (await client.post("/v1/jobs", json={"image": f"asset:{asset}"}, headers=headers)).json()
    assert again["id"] == first["id"]
    await client.post(f"/v1/jobs/{first['id']}/cancel", headers=AUTH_A)
    assert (await client.delete(f"/v1/jobs/{first['id']}", headers=AUTH_A)).status_code == 204
    response = await client.post("/v1/jobs", json={"image": f"asset:{asset}"}, headers=headers)
    assert response.status_code == 202 and response.json()["id"] != first["id"]
