"""Stored directions over HTTP: upload (JSON or safetensors), read, list, delete, tenancy, and the
checks against the model's widths; the stored file is what the worker reads."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save

from api_schemas.directions import DirectionResource
from jobstate.directions import put_directions
from service.app import create_app
from service.handlers.directions import read_safetensors, safetensors_bytes
from service.settings import Settings
from storage.keys import direction_key
from tests.service.conftest import (
    AUTH_A,
    AUTH_B,
    assert_problem,
    make_settings,
    open_client,
    page_ids,
    upload_image,
)
from workers.directions import read_direction

pytestmark = pytest.mark.anyio


@pytest.fixture
def direction_settings(tmp_path: Path, redis_url: str) -> Settings:
    dims = {"custom": {"embedding": 8, "latent_channels": 4}}
    return make_settings(tmp_path, redis_url, models=["svd-xt", "tiny", "custom", "mystery"], model_dimensions=dims)


@pytest.fixture
async def client(direction_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_client(create_app(direction_settings)):
        yield c


async def test_store_read_list_and_delete(client, direction_settings):
    vector = [0.5, -1.0, 0.25, 2.0, 0.0, 1.0, -0.5, 3.0]
    made = await client.post(
        "/v1/directions", json={"vector": vector, "model": "custom", "name": "warmth"}, headers=AUTH_A
    )
    assert made.status_code == 201, made.text
    direction = made.json()
    assert direction["id"].startswith("dir_") and direction["dimension"] == 8 and direction["space"] == "embedding"
    assert (direction["name"], direction["model"], direction["method"]) == ("warmth", "custom", "upload")

    # The worker reads the stored file as the vector that was sent.
    stored = direction_settings.storage_local_dir / direction_key("tenant-a", direction["id"])
    assert read_direction(stored.read_bytes(), "directions[0].source").tolist() == vector

    assert (await client.get(f"/v1/directions/{direction['id']}", headers=AUTH_A)).json() == direction
    second = await client.post(
        "/v1/directions", json={"vector": [1, 0, 0, 0], "model": "tiny", "space": "latent"}, headers=AUTH_A
    )
    listed = (await client.get("/v1/directions", headers=AUTH_A)).json()["items"]
    assert [d["id"] for d in listed] == [second.json()["id"], direction["id"]]

    # A job cites it; once deleted, a job citing it is refused at submit.
    image = await upload_image(client)
    job = {"model": "custom", "image": f"asset:{image}", "directions": [{"source": {"id": direction["id"]}}]}
    assert (await client.post("/v1/jobs", json=job, headers=AUTH_A)).status_code == 202
    assert (await client.delete(f"/v1/directions/{direction['id']}", headers=AUTH_A)).status_code == 204
    assert_problem(await client.get(f"/v1/directions/{direction['id']}", headers=AUTH_A), 404)
    assert not stored.exists()
    refused = assert_problem(await client.post("/v1/jobs", json=job, headers=AUTH_A), 422)
    assert refused["errors"][0]["rule"] == "unknown_direction"


async def test_another_tenants_direction_is_404(client):
    made = (
        await client.post(
            "/v1/directions", json={"vector": [1, 2, 3, 4], "model": "tiny", "space": "latent"}, headers=AUTH_A
        )
    ).json()
    assert_problem(await client.get(f"/v1/directions/{made['id']}", headers=AUTH_B), 404)
    assert_problem(await client.delete(f"/v1/directions/{made['id']}", headers=AUTH_B), 404)
    assert (await client.get("/v1/directions", headers=AUTH_B)).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"vector": [1.0] * 31, "model": "tiny"}, "vector", "model_width"),  # tiny's embedding is 32 wide
        ({"vector": [1.0] * 8, "model": "svd-xt"}, "vector", "model_width"),  # another model's width
        ({"vector": [1.0] * 6, "model": "tiny", "space": "latent"}, "vector", "model_width"),  # not per channel
        ({"vector": [0.0] * 32, "model": "tiny"}, "vector", "not_zero"),
        ({"vector": [1e-300] * 32, "model": "tiny"}, "vector", "not_zero"),  # zero once stored in 32 bits
        ({"vector": [1.0] * 31 + [1e39], "model": "tiny"}, "vector", "float32"),  # finite, past 32 bits' range
        ({"vector": [1.0, "x"], "model": "tiny"}, "vector", "float_type"),
        ({"vector": [], "model": "tiny"}, "vector", "too_short"),
        ({"vector": [1.0] * 32, "model": "nope"}, "model", "known_model"),
        ({"vector": [1.0] * 32, "model": "mystery"}, "model", "known_dimensions"),
        ({"vector": [1.0] * 32, "model": ""}, "model", "string_too_short"),
        ({"vector": [1.0] * 32, "model": "tiny", "space": "pixels"}, "space", "literal_error"),
    ],
)
async def test_a_direction_that_cannot_work_is_422_naming_the_rule(client, body, field, rule):
    problem = assert_problem(await client.post("/v1/directions", json=body, headers=AUTH_A), 422)
    assert (problem["errors"][0]["field"], problem["errors"][0]["rule"]) == (field, rule)


async def test_non_finite_values_are_refused(client):
    body = '{"vector": [1.0, NaN, 2.0, 3.0], "model": "tiny", "space": "latent"}'
    headers = {**AUTH_A, "Content-Type": "application/json"}
    problem = assert_problem(await client.post("/v1/directions", content=body, headers=headers), 422)
    assert problem["errors"][0]["field"].startswith("vector")


async def test_a_safetensors_file_is_stored_as_its_vector(client):
    data = save({"direction": torch.linspace(-1, 1, 32, dtype=torch.float64).reshape(4, 8)})
    files = {"file": ("warm.safetensors", data, "application/octet-stream")}
    made = await client.post(
        "/v1/directions", files=files, data={"model": "tiny", "name": "made elsewhere"}, headers=AUTH_A
    )
    assert made.status_code == 201, made.text
    assert made.json()["dimension"] == 32 and made.json()["name"] == "made elsewhere"

    broken = {"file": ("x.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}", "application/octet-stream")}
    problem = assert_problem(
        await client.post("/v1/directions", files=broken, data={"model": "tiny"}, headers=AUTH_A), 422
    )
    assert (problem["errors"][0]["field"], problem["errors"][0]["rule"]) == ("file", "safetensors")
    half = {
        "file": ("h.safetensors", save({"direction": torch.ones(32, dtype=torch.float16)}), "application/octet-stream")
    }
    problem = assert_problem(
        await client.post("/v1/directions", files=half, data={"model": "tiny"}, headers=AUTH_A), 422
    )
    assert "F32 or F64" in problem["errors"][0]["message"]


def test_the_hand_written_safetensors_file_reads_back_everywhere():
    values = [0.1, -2.5, 3.0]
    data = safetensors_bytes(values)
    assert read_safetensors(data) == pytest.approx(values)
    assert read_direction(data, "x").tolist() == pytest.approx(values)


async def test_models_report_their_direction_widths(client):
    items = {m["name"]: m for m in (await client.get("/v1/models", headers=AUTH_A)).json()["items"]}
    assert items["svd-xt"]["dimensions"] == {"embedding": 1024, "latent_channels": 4}
    assert items["custom"]["dimensions"] == {"embedding": 8, "latent_channels": 4}
    assert items["mystery"]["dimensions"] is None


async def test_a_job_citing_a_direction_of_another_model_or_space_is_422_at_submit(client):
    made = await client.post(
        "/v1/directions", json={"vector": [0.5] * 8, "model": "custom", "space": "embedding"}, headers=AUTH_A
    )
    direction = made.json()["id"]
    image = f"asset:{await upload_image(client)}"

    def job(model: str, space: str) -> dict:
        return {"model": model, "image": image, "directions": [{"source": {"id": direction}, "space": space}]}

    other_model = await client.post("/v1/jobs", json=job("tiny", "embedding"), headers=AUTH_A)
    body = assert_problem(other_model, 422)
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("directions[0].source.id", "direction_model")]
    assert "is for model 'custom', the job runs 'tiny'" in body["errors"][0]["message"]
    other_space = assert_problem(await client.post("/v1/jobs", json=job("custom", "latent"), headers=AUTH_A), 422)
    assert [(e["field"], e["rule"]) for e in other_space["errors"]] == [("directions[0].source.id", "direction_space")]
    fits = await client.post("/v1/jobs", json=job("custom", "embedding"), headers=AUTH_A)
    assert fits.status_code == 202, fits.text
    # Deleted, the direction is an unknown one at submit, not a failed job later.
    assert (await client.delete(f"/v1/directions/{direction}", headers=AUTH_A)).status_code == 204
    gone = assert_problem(await client.post("/v1/jobs", json=job("custom", "embedding"), headers=AUTH_A), 422)
    assert gone["errors"][0]["rule"] == "unknown_direction"


async def test_directions_are_paged_with_a_cursor_even_through_ties(client, sync_redis):
    """Newest first, every direction once, pages full while more follow; a fit's directions share one
    creation time, and a page may end between them."""
    uploaded = []
    for n in range(3):
        made = await client.post(
            "/v1/directions", json={"vector": [n + 1, 0, 0, 0], "model": "tiny", "space": "latent"}, headers=AUTH_A
        )
        uploaded.append(made.json()["id"])
    template = DirectionResource.model_validate(
        (await client.get(f"/v1/directions/{uploaded[0]}", headers=AUTH_A)).json()
    )
    at = datetime.now(UTC) + timedelta(seconds=5)
    fitted = [f"dir_job_0123_{i}" for i in range(3)]
    put_directions(sync_redis, "tenant-a", [template.model_copy(update={"id": i, "created_at": at}) for i in fitted])

    pages = await page_ids(client, "/v1/directions", 2)
    assert [i for p in pages for i in p] == fitted[::-1] + uploaded[::-1]
    assert [len(p) for p in pages] == [2, 2, 2]

    bad = assert_problem(await client.get("/v1/directions", params={"cursor": "nonsense"}, headers=AUTH_A), 422)
    assert bad["errors"][0]["field"] == "cursor"
