"""Fitting directions over HTTP, at the API: a fit is checked, recorded and queued on the model's GPU
queue in one step, read and canceled at `/v1/directions/fits/{id}`, and kept out of the tenant's jobs.
(The worker's side runs in `tests/integration/test_direction_fits.py`.)"""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobstate.queues import RUN_JOB_TASK
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import (
    AUTH_A,
    AUTH_B,
    assert_problem,
    make_settings,
    open_client,
    page_ids,
    upload_image,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def fit_settings(tmp_path: Path, redis_url: str) -> Settings:
    return make_settings(tmp_path, redis_url, models=["tiny", "mystery"], default_model="tiny")


@pytest.fixture
async def client(fit_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_client(create_app(fit_settings)):
        yield c


async def images(client: httpx.AsyncClient, n: int, auth: dict[str, str] = AUTH_A) -> list[str]:
    return [f"asset:{await upload_image(client, auth)}" for _ in range(n)]


async def test_a_fit_is_queued_on_its_models_gpu_queue_and_read_as_a_fit(client, sync_redis):
    refs = await images(client, 3)
    made = await client.post(
        "/v1/directions", json={"method": "pca", "model": "tiny", "images": refs, "k": 2}, headers=AUTH_A
    )
    assert made.status_code == 202, made.text
    fit = made.json()
    assert fit["id"].startswith("job_") and fit["status"] == "queued" and fit["directions"] == []
    assert made.headers["Location"] == f"/v1/directions/fits/{fit['id']}"
    assert fit["request"]["method"] == "pca" and fit["request"]["kind"] == "direction_fit"
    assert fit["urls"]["cancel"] == f"http://testserver/v1/directions/fits/{fit['id']}/cancel"

    # its task is the job task, on the model's queue, so a GPU worker with the encoders runs it
    [message] = sync_redis.lrange("gpu.tiny", 0, -1)
    envelope = json.loads(message)
    assert envelope["headers"]["task"] == RUN_JOB_TASK and envelope["headers"]["id"] == fit["id"]

    got = await client.get(f"/v1/directions/fits/{fit['id']}", headers=AUTH_A)
    assert got.status_code == 200 and got.json()["request"]["images"] == refs

    # a fit is not one of the tenant's jobs
    assert_problem(await client.get(f"/v1/jobs/{fit['id']}", headers=AUTH_A), 404)
    assert (await client.get("/v1/jobs", headers=AUTH_A)).json()["items"] == []


async def test_a_queued_fit_is_canceled_at_once_and_another_tenant_sees_nothing(client):
    refs = await images(client, 2)
    fit = (
        await client.post("/v1/directions", json={"method": "ica", "model": "tiny", "images": refs}, headers=AUTH_A)
    ).json()
    assert_problem(await client.get(f"/v1/directions/fits/{fit['id']}", headers=AUTH_B), 404)
    assert_problem(await client.post(f"/v1/directions/fits/{fit['id']}/cancel", headers=AUTH_B), 404)
    canceled = await client.post(f"/v1/directions/fits/{fit['id']}/cancel", headers=AUTH_A)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    again = await client.post(f"/v1/directions/fits/{fit['id']}/cancel", headers=AUTH_A)
    assert again.status_code == 200  # canceling a canceled fit changes nothing
    # a job's id is not a fit
    job = await client.post("/v1/jobs", json={"model": "tiny", "image": refs[0]}, headers=AUTH_A)
    assert_problem(await client.get(f"/v1/directions/fits/{job.json()['id']}", headers=AUTH_A), 404)


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"method": "lda", "images": 3}, "method", "literal_error"),
        ({"method": "pca", "images": 1}, "images", "too_few"),
        ({"method": "pca", "images": 3, "k": 3}, "images", "too_few"),
        ({"method": "supervised", "images": 3, "labels": [1, 0, 1]}, "images", "too_few"),
        ({"method": "probe", "images": 3, "labels": [1, 0]}, "labels", "one_per_image"),
        ({"method": "probe", "images": 3}, "labels", "one_per_image"),
        ({"method": "pca", "images": 3, "labels": [1, 0, 1]}, "labels", "method_inputs"),
        ({"method": "contrastive", "images": 0}, "pairs", "required"),
        ({"method": "contrastive", "images": 2}, "images", "method_inputs"),
        ({"method": "contrastive", "pairs": [["asset:ast_nope", "asset:ast_nada"]]}, "pairs[0][0]", "unknown_asset"),
        ({"method": "pca", "images": ["https://example.com/a.png", "asset:x"]}, "images[0]", "asset_ref"),
        ({"method": "pca", "images": 3, "attributes": {"smile": [1, 0]}}, "attributes.smile", "one_per_image"),
        ({"method": "text", "text": "a smile", "space": "latent"}, "space", "text_embedding"),
        ({"method": "text"}, "text", "required"),
        ({"method": "text", "text": "a smile", "model": "mystery"}, "method", "text_encoder_missing"),
        ({"method": "pca", "images": 3, "model": "nope"}, "model", "known_model"),
        ({"method": "pca", "images": 3, "model": "mystery"}, "model", "known_dimensions"),
        ({"method": "pca", "images": 3, "webhook": {"url": "http://127.0.0.1:9/x"}}, "webhook.url", "public_url"),
    ],
)
async def test_a_fit_that_cannot_work_is_422_naming_the_field_and_rule(client, body, field, rule):
    if isinstance(body.get("images"), int):
        body = {**body, "images": await images(client, body["images"])}
    body = {"model": "tiny", **body}
    problem = assert_problem(await client.post("/v1/directions", json=body, headers=AUTH_A), 422)
    assert (problem["errors"][0]["field"], problem["errors"][0]["rule"]) == (field, rule), problem
    assert problem["title"] == "Invalid direction"  # whichever check refused it


async def test_a_text_fit_needs_no_images_on_a_model_with_a_text_encoder(client):
    made = await client.post(
        "/v1/directions", json={"method": "text", "model": "tiny", "text": "a red circle"}, headers=AUTH_A
    )
    assert made.status_code == 202, made.text
    assert made.json()["request"]["from_text"] is None and made.json()["request"]["images"] == []


async def test_a_fit_on_another_tenants_images_is_refused(client):
    theirs = await images(client, 3, AUTH_B)
    problem = assert_problem(
        await client.post("/v1/directions", json={"method": "pca", "model": "tiny", "images": theirs}, headers=AUTH_A),
        422,
    )
    assert {e["rule"] for e in problem["errors"]} == {"unknown_asset"}
    assert [e["field"] for e in problem["errors"]] == ["images[0]", "images[1]", "images[2]"]


async def test_pages_of_jobs_are_full_however_many_fits_lie_between_them(client):
    """Fits share the tenant's job index; a page of /v1/jobs still holds `limit` jobs while more exist,
    and every job is listed once."""
    refs = await images(client, 2)
    fit = {"method": "pca", "model": "tiny", "images": refs}
    made: list[str] = []
    for n in range(3):
        job = await client.post("/v1/jobs", json={"model": "tiny", "image": refs[0], "seed": n}, headers=AUTH_A)
        made.append(job.json()["id"])
        for _ in range(3):  # three fits newer than each job
            assert (await client.post("/v1/directions", json=fit, headers=AUTH_A)).status_code == 202
    pages = await page_ids(client, "/v1/jobs", 2)
    assert pages == [made[::-1][:2], made[::-1][2:]]


async def test_fits_are_listed_newest_first_apart_from_jobs(client):
    refs = await images(client, 2)
    fits = []
    for n in range(3):
        made = await client.post(
            "/v1/directions",
            json={"method": "pca", "model": "tiny", "images": refs, "name": f"set {n}"},
            headers=AUTH_A,
        )
        fits.append(made.json()["id"])
        await client.post("/v1/jobs", json={"model": "tiny", "image": refs[0], "seed": n}, headers=AUTH_A)
    first = (await client.get("/v1/directions/fits", params={"limit": 2}, headers=AUTH_A)).json()
    assert [f["id"] for f in first["items"]] == fits[::-1][:2] and first["items"][0]["request"]["name"] == "set 2"
    rest = (await client.get("/v1/directions/fits", params={"cursor": first["next_cursor"]}, headers=AUTH_A)).json()
    assert [f["id"] for f in rest["items"]] == fits[:1] and rest["next_cursor"] is None
    assert (await client.get("/v1/directions/fits", headers=AUTH_B)).json()["items"] == []
    bad = assert_problem(await client.get("/v1/directions/fits", params={"limit": 0}, headers=AUTH_A), 422)
    assert bad["errors"][0]["field"] == "limit"


async def test_a_fit_or_a_vector_without_a_model_is_the_default_models(client, sync_redis):
    # as a job without `model` runs on the service's default model
    made = await client.post(
        "/v1/directions", json={"method": "pca", "images": await images(client, 2)}, headers=AUTH_A
    )
    assert made.status_code == 202, made.text
    assert made.json()["model"] == "tiny" and made.json()["request"]["model"] == "tiny"
    assert len(sync_redis.lrange("gpu.tiny", 0, -1)) == 1

    stored = await client.post("/v1/directions", json={"vector": [1.0] * 32}, headers=AUTH_A)
    assert stored.status_code == 201, stored.text
    assert stored.json()["model"] == "tiny"
    # a safetensors upload without `model` too
    import torch
    from safetensors.torch import save

    files = {"file": ("d.safetensors", save({"direction": torch.ones(32)}), "application/octet-stream")}
    uploaded = await client.post("/v1/directions", files=files, headers=AUTH_A)
    assert uploaded.status_code == 201 and uploaded.json()["model"] == "tiny", uploaded.text
    # and the default model's widths still hold
    assert_problem(await client.post("/v1/directions", json={"vector": [1.0] * 31}, headers=AUTH_A), 422, "vector")
