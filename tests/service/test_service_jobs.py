"""Jobs over HTTP: submit, idempotency, validation as problem details, tenants, cancel, wait, results."""

import base64
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from api_schemas import JobStatus
from jobstate.records import StoredArtifact, StoredResult
from jobstate.store import JobStore, failure
from service.app import create_app
from service.settings import Settings
from tests.servers import start_redis
from tests.service.conftest import (
    AUTH_A,
    AUTH_B,
    assert_problem,
    make_settings,
    open_client,
    png,
    upload,
    upload_image,
)
from tests.videos import clip

pytestmark = pytest.mark.anyio


async def submit(client: httpx.AsyncClient, doc: dict, auth: dict = AUTH_A, **headers: str) -> httpx.Response:
    return await client.post("/v1/jobs", json=doc, headers={**auth, **headers})


async def new_job(client: httpx.AsyncClient, auth: dict = AUTH_A, **extra: object) -> dict:
    asset = await upload_image(client, auth)
    response = await submit(client, {"image": f"asset:{asset}", **extra}, auth)
    assert response.status_code == 202, response.text
    return response.json()


def queued_messages(r: redis.Redis, queue: str) -> list[dict]:
    return [json.loads(m) for m in r.lrange(queue, 0, -1)]


async def test_submit_resolves_defaults_and_enqueues_by_task_name(
    client: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    asset = await upload_image(client)
    response = await submit(client, {"image": f"asset:{asset}", "generation": {"steps": 4}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["model"] == "svd-xt"
    assert job["request"]["model"] == "svd-xt" and isinstance(job["request"]["seed"], int)
    assert job["request"]["generation"]["steps"] == 4 and job["request"]["generation"]["fps"] == 7
    (message,) = queued_messages(sync_redis, "gpu.svd-xt")
    assert message["headers"]["task"] == "vsteer.run_job.v1"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert args == [] and kwargs == {"job_id": job["id"], "tenant": "tenant-a"}

    fetched = await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)
    assert fetched.status_code == 200 and fetched.json() == job


async def test_idempotency_key_same_body_one_job_other_body_422(
    client: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    asset = await upload_image(client)
    doc = {"image": f"asset:{asset}", "seed": 5}
    first = await submit(client, doc, **{"Idempotency-Key": "k-1"})
    again = await submit(client, {"seed": 5, "image": f"asset:{asset}"}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert len(queued_messages(sync_redis, "gpu.svd-xt")) == 1
    other = await submit(client, {**doc, "seed": 6}, **{"Idempotency-Key": "k-1"})
    body = assert_problem(other, 422, field="Idempotency-Key")
    assert body["errors"][0]["rule"] == "idempotency_key_reused"
    # Without a key every submission is a new job.
    assert (await submit(client, doc)).json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("doc", "field", "rule"),
    [
        ({"image": "asset:x", "generation": {"width": 1000}}, "generation.width", "multiple_of"),
        ({"image": "asset:x", "generation": {"bogus": 1}}, "generation.bogus", "extra_forbidden"),
        ({"image": "asset:x", "generation": {"num_frames": 1}}, "generation.num_frames", "greater_than_equal"),
        ({"image": "asset:x", "keyframes": [{"image": "asset:y", "at": 2}]}, "keyframes[0].at", "less_than_equal"),
        ({"image": "asset:x", "seed": "abc"}, "seed", "int_type"),
        # Counts and flags are strict: a serialisation slip is an error, not a different job.
        ({"image": "asset:x", "seed": True}, "seed", "int_type"),
        ({"image": "asset:x", "generation": {"steps": "5"}}, "generation.steps", "int_type"),
        ({"image": "asset:x", "generation": {"height": 64.0}}, "generation.height", "int_type"),
        ({"image": "asset:x", "output": {"raw": "yes"}}, "output.raw", "bool_type"),
        (
            {"image": "asset:x", "style": {"image": "asset:s", "strength": 1, "over_frames": "off"}},
            "style.over_frames",
            "bool_type",
        ),
        ({"image": "asset:bad id"}, "image", "value_error"),
        # Rules that span fields still name the one to change.
        ({"seed": 1}, "image", "image_or_keyframes"),
        (
            {"image": "asset:x", "keyframes": [{"image": "asset:y", "at": 0}, {"image": "asset:z", "at": 1}]},
            "keyframes",
            "image_or_keyframes",
        ),
        (
            {"keyframes": [{"image": "asset:y", "at": 0.5}, {"image": "asset:z", "at": 0.2}]},
            "keyframes[1].at",
            "keyframes_ascending",
        ),
        (
            {"image": "asset:x", "interpolation": "bidirectional"},
            "interpolation",
            "bidirectional_two_keyframes",
        ),
        (
            {
                "keyframes": [{"image": "asset:y", "at": 0}, {"image": "asset:z", "at": 0.8}],
                "interpolation": "bidirectional",
            },
            "keyframes[1].at",
            "bidirectional_two_keyframes",
        ),
        (
            {"image": "asset:x", "generation": {"num_frames": 4}, "segments": {"count": 2, "overlap": 4}},
            "segments.overlap",
            "segments_overlap_below_frames",
        ),
        (
            {"image": "asset:x", "segments": {"count": 3, "images": ["asset:y"]}},
            "segments.images",
            "segments_images_per_segment",
        ),
        ({"image": "asset:x", "segments": {"count": 20}}, "segments.count", "less_than_equal"),
        (
            {"image": "asset:x", "sweep": {"target": "direction", "to": 1.0, "count": 2}},
            "sweep.direction",
            "index_into_directions",
        ),
        (
            {"image": "asset:x", "sweep": {"target": "seed", "to": -1, "count": 2}},
            "sweep.to",
            "sweep_to_matches_target",
        ),
        (
            {
                "image": "asset:x",
                "sweep": {"target": "seed", "to": 2, "count": 2},
                "variation": {"seed": 1, "strength": 0.1},
            },
            "variation",
            "sweep_seed_without_variation",
        ),
        (
            {"image": "asset:x", "generation": {"guidance": {"min": 3, "max": 1}}},
            "generation.guidance.min",
            "min_at_most_max",
        ),
        (
            {"image": "asset:x", "directions": [{"source": {"id": "dir_d"}, "steps": [0, 1]}]},
            "directions[0].steps",
            "needs_latent_space",
        ),
        (
            {"image": "asset:x", "style": {"image": "asset:s", "strength": 1, "steps": [0.6, 0.2]}},
            "style.steps",
            "window",
        ),
    ],
)
async def test_invalid_documents_are_422_problems_naming_the_field(
    client: httpx.AsyncClient, doc: dict, field: str, rule: str
) -> None:
    body = assert_problem(await submit(client, doc), 422, field=field)
    assert body["errors"][0]["rule"] == rule
    assert field in body["detail"]


async def test_a_segment_overlap_as_long_as_the_models_clip_is_refused_at_submit(client: httpx.AsyncClient) -> None:
    asset = await upload_image(client, AUTH_A)
    # No `num_frames`: svd-xt's own 25 frames, which the schema cannot know.
    doc = {"image": f"asset:{asset}", "model": "svd-xt", "segments": {"count": 2, "overlap": 25}}
    body = assert_problem(await submit(client, doc), 422, field="segments.overlap")
    assert body["errors"][0]["rule"] == "segments_overlap_below_frames" and "25 frames" in body["detail"]
    accepted = await submit(client, {**doc, "segments": {"count": 2, "overlap": 24}})
    assert accepted.status_code == 202, accepted.text


async def test_messages_say_what_they_got_once_and_nothing_internal(client: httpx.AsyncClient) -> None:
    body = assert_problem(await submit(client, {"image": "asset:../../etc"}), 422, field="image")
    assert body["detail"].count("'asset:../../etc'") == 1
    body = assert_problem(await submit(client, {"image": "data:image/png;base64,AAAA"}), 422, field="image")
    assert "not a PNG, JPEG, WebP or GIF image" in body["detail"] and "BytesIO" not in body["detail"]
    listing = await client.get("/v1/jobs", params={"limit": 0}, headers=AUTH_A)
    assert assert_problem(listing, 422, field="limit")["title"] == "Invalid request"


async def test_document_level_rules_and_malformed_json(client: httpx.AsyncClient) -> None:
    body = assert_problem(await submit(client, {"seed": 1}), 422)
    assert "`image` or `keyframes`" in body["detail"]
    raw = await client.post("/v1/jobs", content=b"{not json", headers={**AUTH_A, "content-type": "application/json"})
    assert_problem(raw, 422)


async def test_deployment_rules_name_the_field(client: httpx.AsyncClient) -> None:
    asset = await upload_image(client)
    cases = [
        ({"image": f"asset:{asset}", "model": "sdxl"}, "model", "known_model"),
        (
            {"keyframes": [{"image": f"asset:{asset}", "at": 0}, {"image": "asset:ast_nope", "at": 1}]},
            "keyframes[1].image",
            "unknown_asset",
        ),
        (
            {
                "keyframes": [{"image": f"asset:{asset}", "at": 0}, {"image": f"asset:{asset}", "at": 1}],
                "interpolation": "geodesic",
                "corpus": [f"asset:{asset}"] * 3 + ["asset:ast_nope"] + [f"asset:{asset}"] * 60,
            },
            "corpus[3]",
            "unknown_asset",
        ),
        ({"image": "/home/me/cat.png"}, "image", "no_local_paths"),
        ({"image": "https://example.com/cat.png"}, "image", "no_remote_images"),
        (
            {"image": f"asset:{asset}", "directions": [{"source": {"path": "/tmp/d.safetensors"}}]},
            "directions[0].source.path",
            "no_local_paths",
        ),
        ({"image": f"asset:{asset}", "webhook": {"url": "http://127.0.0.1:8080/h"}}, "webhook.url", "public_url"),
        ({"image": f"asset:{asset}", "webhook": {"url": "http://169.254.169.254/x"}}, "webhook.url", "public_url"),
        ({"image": f"asset:{asset}", "webhook": {"url": "http://[::ffff:10.0.0.1]/x"}}, "webhook.url", "public_url"),
        ({"image": "data:image/png;base64,AAAA"}, "image", "image_decodable"),
        ({"image": "data:image/png;base64," + base64.b64encode(png(1, 200)).decode()}, "image", "min_image_side"),
        (
            {
                "image": f"asset:{asset}",
                "references": [{"image": "data:image/png;base64," + base64.b64encode(png(7, 7)).decode(), "weight": 1}],
            },
            "references[0].image",
            "min_image_side",
        ),
    ]
    for doc, field, rule in cases:
        body = assert_problem(await submit(client, doc), 422, field=field)
        assert body["errors"][0]["rule"] == rule, body
    local = (await submit(client, {"image": "cat.png"})).json()
    assert "local paths are accepted by the CLI only" in local["detail"]


async def test_data_uris_are_decoded_within_the_pixel_limit(client: httpx.AsyncClient) -> None:
    small = "data:image/png;base64," + base64.b64encode(png(32, 32)).decode()
    assert (await submit(client, {"image": small})).status_code == 202
    bomb = "data:image/png;base64," + base64.b64encode(png(2048, 2048, mode="1")).decode()
    body = assert_problem(await submit(client, {"image": bomb}), 422, field="image")
    assert body["errors"][0]["rule"] == "max_image_pixels"


async def test_only_images_small_by_their_header_are_decoded_on_the_event_loop(
    client: httpx.AsyncClient, monkeypatch
) -> None:
    import service.checks

    in_thread: list[object] = []
    real = service.checks.anyio.to_thread.run_sync

    async def recording(func, *args, **kwargs):  # type: ignore[no-untyped-def]
        in_thread.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(service.checks.anyio.to_thread, "run_sync", recording)
    small = "data:image/png;base64," + base64.b64encode(png(64, 64)).decode()
    assert (await submit(client, {"image": small})).status_code == 202
    assert service.checks.inspect_image not in in_thread  # (storing it as an asset writes in a thread)
    # a few kilobytes of PNG, but 400x400 pixels to decode: a worker thread's job
    large = png(400, 400, mode="1")
    assert len(large) < 4096
    large_uri = "data:image/png;base64," + base64.b64encode(large).decode()
    assert (await submit(client, {"image": large_uri})).status_code == 202
    assert in_thread.count(service.checks.inspect_image) == 1


async def test_video_asset_is_not_an_image(client: httpx.AsyncClient) -> None:
    video = (await upload(client, clip(), name="clip.mp4")).json()
    assert video["kind"] == "video"
    body = assert_problem(await submit(client, {"image": f"asset:{video['id']}"}), 422, field="image")
    assert body["errors"][0]["rule"] == "image_asset"


async def test_tenant_isolation_every_id_route_is_404(client: httpx.AsyncClient, store: JobStore) -> None:
    job = await new_job(client, AUTH_A)
    asset = await upload_image(client, AUTH_A)
    store.mark_running(job["id"])
    store.succeed(
        job["id"],
        StoredResult(poster=StoredArtifact(key="jobs/tenant-a/x/poster.png", content_type="image/png", bytes=1)),
    )
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("GET", f"/v1/jobs/{job['id']}/result/poster"),
        ("GET", f"/v1/assets/{asset}"),
    ]:
        assert_problem(await client.request(method, path, headers=AUTH_B), 404)
        assert (await client.request(method, path, headers=AUTH_A)).status_code in (200, 307, 409)
    # Another tenant's asset cannot be used in a job either.
    body = assert_problem(await submit(client, {"image": f"asset:{asset}"}, AUTH_B), 422, field="image")
    assert body["errors"][0]["rule"] == "unknown_asset"
    listed = (await client.get("/v1/jobs", headers=AUTH_B)).json()
    assert listed == {"items": [], "next_cursor": None}


async def test_authentication_is_required(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/jobs"), 401)
    response = await client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_list_pages_newest_first_with_status_filter(client: httpx.AsyncClient, store: JobStore) -> None:
    ids = [(await new_job(client))["id"] for _ in range(5)]
    page = (await client.get("/v1/jobs?limit=2", headers=AUTH_A)).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    await new_job(client)  # an insert between pages does not shift the next page
    page2 = (await client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}", headers=AUTH_A)).json()
    assert [j["id"] for j in page2["items"]] == ids[::-1][2:4]
    store.mark_running(ids[0])
    running = (await client.get("/v1/jobs?status=running", headers=AUTH_A)).json()
    assert [j["id"] for j in running["items"]] == [ids[0]]
    assert_problem(await client.get("/v1/jobs?cursor=nonsense", headers=AUTH_A), 422, field="cursor")
    assert_problem(await client.get("/v1/jobs?status=done", headers=AUTH_A), 422, field="status")
    assert_problem(await client.get("/v1/jobs?limit=5000", headers=AUTH_A), 422, field="limit")


async def test_cancel(client: httpx.AsyncClient, store: JobStore, sync_redis: redis.Redis) -> None:
    hook = {"url": "https://93.184.216.34/hook"}
    queued = await new_job(client, webhook=hook)
    response = await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=AUTH_A)
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    # Canceled before any worker saw it: the API queues the webhook itself.
    (message,) = queued_messages(sync_redis, "webhooks")
    assert message["headers"]["task"] == "vsteer.deliver_webhook.v1"
    kwargs = json.loads(base64.b64decode(message["body"]))[1]
    assert kwargs["msg_id"] == f"msg_{queued['id']}_canceled" and kwargs["url"] == hook["url"]
    assert json.loads(kwargs["body"])["data"]["status"] == "canceled"
    again = await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=AUTH_A)
    assert again.status_code == 200

    running = await new_job(client)
    store.mark_running(running["id"])
    response = await client.post(f"/v1/jobs/{running['id']}/cancel", headers=AUTH_A)
    assert response.status_code == 202 and response.json()["status"] == "running"
    assert store.is_cancel_requested(running["id"])

    done = await new_job(client)
    store.mark_running(done["id"])
    store.fail(done["id"], failure("Out of memory", "CUDA out of memory"))
    assert_problem(await client.post(f"/v1/jobs/{done['id']}/cancel", headers=AUTH_A), 409)
    failed = (await client.get(f"/v1/jobs/{done['id']}", headers=AUTH_A)).json()
    assert failed["status"] == "failed" and failed["error"]["title"] == "Out of memory"


async def test_prefer_wait_answers_200_when_finished_else_202(client: httpx.AsyncClient, store: JobStore) -> None:
    asset = await upload_image(client)

    def finish_soon() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            page = store.list_jobs("tenant-a")
            if page.records:
                time.sleep(0.2)
                store.mark_running(page.records[0].id)
                store.succeed(page.records[0].id, StoredResult(metrics={"seconds": 0.1}))
                return
            time.sleep(0.02)

    worker = threading.Thread(target=finish_soon)
    worker.start()
    t0 = time.monotonic()
    response = await submit(client, {"image": f"asset:{asset}"}, Prefer="wait=4")
    worker.join()
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded" and time.monotonic() - t0 < 3
    assert response.headers["preference-applied"] == "wait=4"

    t0 = time.monotonic()
    response = await submit(client, {"image": f"asset:{asset}"}, Prefer="respond-async, wait=0.5")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert 0.4 < time.monotonic() - t0 < 3
    capped = await submit(client, {"image": f"asset:{asset}", "seed": 1}, Prefer="wait=0")
    assert capped.status_code == 202


async def test_result_urls_are_presigned_and_served(
    client: httpx.AsyncClient, store: JobStore, settings: Settings
) -> None:
    from storage.local import LocalStorage

    job = await new_job(client)
    local = LocalStorage(settings.storage_local_dir, secret="test-files-secret")
    key = f"jobs/tenant-a/{job['id']}/video.mp4"
    info = local.put(key, b"\x00\x00\x00\x18ftypmp42 fake video", "video/mp4")
    store.mark_running(job["id"])
    store.succeed(
        job["id"],
        StoredResult(video=StoredArtifact(key=key, content_type="video/mp4", bytes=info.size, sha256=info.sha256)),
    )
    resource = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    video = resource["result"]["video"]
    assert video["sha256"] == info.sha256 and video["url"].startswith("http://testserver/v1/files/")
    served = await client.get(video["url"])
    assert served.status_code == 200 and served.content.startswith(b"\x00\x00\x00\x18ftyp")
    assert served.headers["content-type"] == "video/mp4"
    assert_problem(await client.get(video["url"].replace("sig=", "sig=0")), 404)
    assert_problem(await client.get(video["url"].replace("tenant-a", "tenant-b")), 404)
    redirect = await client.get(f"/v1/jobs/{job['id']}/result/video", headers=AUTH_A)
    assert redirect.status_code == 307 and "/v1/files/" in redirect.headers["location"]
    assert_problem(await client.get(f"/v1/jobs/{job['id']}/result/frames", headers=AUTH_A), 404)


async def test_state_survives_an_api_restart(tmp_path: Path, redis_url: str, store: JobStore) -> None:
    settings = make_settings(tmp_path, redis_url)
    async for client in open_client(create_app(settings)):
        job = await new_job(client)
    store.mark_running(job["id"])
    store.progress(job["id"], "denoise", 7, 25)
    async for client in open_client(create_app(settings)):
        again = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    assert again["id"] == job["id"] and again["status"] == "running"
    assert again["progress"] == {"stage": "denoise", "step": 7, "total": 25, "fraction": 0.28, "percent": 27.4}
    assert again["request"] == job["request"]


async def test_redis_down_is_503_not_500(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "outage")
    settings = make_settings(tmp_path, server.url)
    try:
        async for client in open_client(create_app(settings)):
            asset = await upload_image(client)
            server.stop()
            for method, path, body in [
                ("GET", "/v1/jobs/job_0123456789abcdef0123456789ab", None),
                ("GET", "/v1/jobs", None),
                ("POST", "/v1/jobs", {"image": f"asset:{asset}"}),
                ("POST", "/v1/assets", None),
                ("GET", "/v1/models", None),
            ]:
                kwargs: dict = {"json": body} if body else {}
                if path == "/v1/assets":
                    kwargs = {"files": {"file": ("a.png", png(), "image/png")}}
                response = await client.request(method, path, headers=AUTH_A, **kwargs)
                problem = assert_problem(response, 503)
                assert response.headers["retry-after"] and "unreachable" in problem["detail"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("unavailable")
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200 and "vsteer_redis_up 0.0" in metrics.text
    finally:
        server.stop()


async def test_bodies_over_the_limit_are_413(client: httpx.AsyncClient) -> None:
    big = {"image": "data:image/png;base64," + "A" * (600 * 1024)}
    assert_problem(await submit(client, big), 413)

    async def chunks():  # no Content-Length: the limit is enforced while the body streams
        for _ in range(100):
            yield b" " * 8192

    streamed = await client.post("/v1/jobs", content=chunks(), headers={**AUTH_A, "content-type": "application/json"})
    assert_problem(streamed, 413)


async def test_errors_never_leak_and_are_problems(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal secret detail")

    async for client in open_client(app):
        response = await client.get("/boom")
        body = assert_problem(response, 500)
        assert "secret" not in response.text and "RuntimeError" not in response.text
        assert "incident" in body["detail"]
        assert_problem(await client.get("/v1/nothing-here"), 404)
        assert_problem(await client.delete("/v1/jobs", headers=AUTH_A), 405)


async def test_models_health_and_metrics(client: httpx.AsyncClient, store: JobStore) -> None:
    store.heartbeat("svd-xt", "gpu0@host", ttl_s=60)
    models = (await client.get("/v1/models", headers=AUTH_A)).json()["items"]
    assert models[0] == {
        "name": "svd-xt",
        "default": True,
        "queue": "gpu.svd-xt",
        "warm_workers": ["gpu0@host"],
        "dimensions": {"embedding": 1024, "latent_channels": 4},
        "text_encoder": False,
    }
    assert models[1]["name"] == "svd" and not models[1]["default"]
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "storage": "ok"}

    job = await new_job(client)
    store.mark_running(job["id"])
    store.succeed(job["id"], StoredResult())
    await new_job(client)
    text = (await client.get("/metrics")).text
    assert 'vsteer_jobs{status="succeeded"} 1.0' in text
    assert 'vsteer_jobs{status="queued"} 1.0' in text
    assert 'vsteer_queue_depth{queue="gpu.svd-xt"} 2.0' in text
    assert 'vsteer_job_duration_seconds_count{status="succeeded"} 1.0' in text
    assert 'vsteer_job_duration_seconds_bucket{le="1",status="succeeded"} 1.0' in text
    assert 'vsteer_http_request_duration_seconds_count{method="POST",route="/v1/jobs",status="202"}' in text


async def test_job_status_enum_round_trips() -> None:
    assert JobStatus("canceled").is_terminal() and not JobStatus.running.is_terminal()


async def test_every_submission_takes_one_rate_limit_token(tmp_path: Path, redis_url: str) -> None:
    # The create script takes the token of a valid submission; an invalid one pays it on its way out.
    settings = make_settings(tmp_path, redis_url, rate_limit_per_s=0.001, rate_limit_burst=4)
    async for client in open_client(create_app(settings)):
        asset = await upload_image(client)  # token 1
        assert (await submit(client, {"image": f"asset:{asset}"})).status_code == 202  # token 2
        assert_problem(await submit(client, {"image": f"asset:{asset}", "seed": -1}), 422, "seed")  # token 3
        assert_problem(await submit(client, {"image": f"asset:{asset}", "model": "nope"}), 422, "model")  # 4
        for response in (
            await submit(client, {"image": f"asset:{asset}"}),
            await submit(client, {"image": f"asset:{asset}", "seed": -1}),
            await client.get("/v1/jobs", headers=AUTH_A),
        ):
            body = assert_problem(response, 429)
            assert body["type"].endswith("/rate-limited") and int(response.headers["retry-after"]) >= 1
        # another key has its own bucket
        other = await upload_image(client, AUTH_B)
        assert (await submit(client, {"image": f"asset:{other}"}, AUTH_B)).status_code == 202


async def test_a_limited_key_is_refused_before_its_document_is_checked(
    tmp_path: Path, redis_url: str, monkeypatch
) -> None:
    import service.handlers.jobs

    checked: list[object] = []
    real = service.handlers.jobs.check_document

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        checked.append(args[0])
        await real(*args, **kwargs)

    monkeypatch.setattr(service.handlers.jobs, "check_document", counting)
    settings = make_settings(tmp_path, redis_url, rate_limit_per_s=0.001, rate_limit_burst=1)
    image = "data:image/png;base64," + base64.b64encode(png(32, 32)).decode()
    async for client in open_client(create_app(settings)):
        assert (await submit(client, {"image": image})).status_code == 202
        assert_problem(await submit(client, {"image": image}), 429)  # found empty by the create script
        assert len(checked) == 2
        for _ in range(3):
            assert_problem(await submit(client, {"image": image}), 429)
        assert len(checked) == 2  # refused up front: no more document checks
