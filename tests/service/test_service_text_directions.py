"""`text` direction sources over HTTP: a model without a text encoder is a 422 at submit
(`text_encoder_missing`), `GET /v1/models` says which models have one, and a text source in the latent
space is refused by the schema."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import AUTH_A, assert_problem, make_settings, open_client, upload_image

pytestmark = pytest.mark.anyio

SMILE = {"text": "a smiling face", "from_text": "a neutral face"}


@pytest.fixture
def text_settings(tmp_path: Path, redis_url: str) -> Settings:
    # svd-xt is configured with its text tower; svd is not; tiny always has its tiny one.
    return make_settings(tmp_path, redis_url, models=["svd-xt", "svd", "tiny"], text_encoder_models=["svd-xt"])


@pytest.fixture
async def client(text_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_client(create_app(text_settings)):
        yield c


def errors_of(body: dict) -> list[tuple[str, str]]:
    return [(e["field"], e["rule"]) for e in body["errors"]]


async def test_models_report_whether_they_have_a_text_encoder(client):
    items = {m["name"]: m for m in (await client.get("/v1/models", headers=AUTH_A)).json()["items"]}
    assert {name: item["text_encoder"] for name, item in items.items()} == {"svd-xt": True, "svd": False, "tiny": True}


async def test_a_text_direction_on_a_model_without_a_text_encoder_is_422_at_submit(client):
    image = f"asset:{await upload_image(client)}"
    directions = [
        {"source": {"vector": [1.0] * 1024}, "preserve": [{"text": "a face"}]},
        {"source": SMILE, "strength": 2.0},
    ]
    refused = await client.post(
        "/v1/jobs", json={"model": "svd", "image": image, "directions": directions}, headers=AUTH_A
    )
    body = assert_problem(refused, 422)
    assert errors_of(body) == [
        ("directions[0].preserve[0].text", "text_encoder_missing"),
        ("directions[1].source.text", "text_encoder_missing"),
    ]
    assert "model 'svd' has no text encoder" in body["errors"][0]["message"]
    # The models that have one take the same job.
    for model in ("svd-xt", "tiny"):
        accepted = await client.post(
            "/v1/jobs", json={"model": model, "image": image, "directions": directions}, headers=AUTH_A
        )
        assert accepted.status_code == 202, accepted.text
        source = accepted.json()["request"]["directions"][1]["source"]
        assert {k: v for k, v in source.items() if v is not None} == SMILE


async def test_the_default_model_is_the_one_checked(tmp_path, redis_url):
    settings = make_settings(tmp_path, redis_url, models=["svd", "tiny"], default_model="svd")
    async for client in open_client(create_app(settings)):
        image = f"asset:{await upload_image(client)}"
        refused = await client.post(
            "/v1/jobs", json={"image": image, "directions": [{"source": SMILE}]}, headers=AUTH_A
        )
        assert errors_of(assert_problem(refused, 422)) == [("directions[0].source.text", "text_encoder_missing")]


async def test_a_text_source_in_the_latent_space_or_a_lone_from_text_is_422(client):
    image = f"asset:{await upload_image(client)}"

    async def submit(direction: dict) -> dict:
        doc = {"model": "tiny", "image": image, "directions": [direction]}
        return assert_problem(await client.post("/v1/jobs", json=doc, headers=AUTH_A), 422)

    latent = await submit({"source": SMILE, "space": "latent"})
    assert errors_of(latent) == [("directions[0].source.text", "text_needs_embedding_space")]
    lone = await submit({"source": {"vector": [1.0] * 32, "from_text": "a neutral face"}})
    assert errors_of(lone) == [("directions[0].source.from_text", "from_text_needs_text")]


async def test_a_comparison_names_each_model_without_a_text_encoder(client):
    image = f"asset:{await upload_image(client)}"
    body = {"models": ["tiny", "svd"], "job": {"image": image, "directions": [{"source": SMILE}]}}
    refused = assert_problem(await client.post("/v1/comparisons", json=body, headers=AUTH_A), 422)
    assert errors_of(refused) == [("models[1]", "text_encoder_missing")]


async def test_an_anchor_set_for_a_model_without_a_text_encoder_refuses_its_text_directions(client):
    body = {"name": "smile", "model": "svd", "directions": [{"source": SMILE}]}
    refused = assert_problem(await client.post("/v1/anchors", json=body, headers=AUTH_A), 422)
    assert errors_of(refused) == [("directions[0].source.text", "text_encoder_missing")]
    made = await client.post("/v1/anchors", json={**body, "model": "tiny"}, headers=AUTH_A)
    assert made.status_code == 201, made.text
