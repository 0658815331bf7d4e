"""Anchor sets over HTTP: create, read, list, version, delete, tenants, and jobs that cite them."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from api_schemas.anchors import fields_hash
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import AUTH_A, AUTH_B, assert_problem, open_client, upload_image

pytestmark = pytest.mark.anyio


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    def store_direction(self, tenant: str, direction_id: str) -> None:
        """A stored direction, where the worker reads it (`directions/<tenant>/<id>.safetensors`)."""
        key = f"directions/{tenant}/{direction_id}.safetensors"
        self.app.state.storage.put(key, b"vector", "application/octet-stream")


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async for client in open_client(app):
        yield Api(app, client)


async def create(client: httpx.AsyncClient, body: dict, auth: dict = AUTH_A) -> httpx.Response:
    return await client.post("/v1/anchors", json=body, headers=auth)


async def new_anchor(client: httpx.AsyncClient, body: dict, auth: dict = AUTH_A) -> dict:
    response = await create(client, body, auth)
    assert response.status_code == 201, response.text
    return response.json()


async def submit(client: httpx.AsyncClient, doc: dict, auth: dict = AUTH_A) -> httpx.Response:
    return await client.post("/v1/jobs", json=doc, headers=auth)


async def test_create_get_list_version_and_delete(api: Api) -> None:
    client = api.client
    ref = await upload_image(client)
    api.store_direction("tenant-a", "dir_smile")
    body = {
        "name": "house look",
        "seed": 7,
        "references": [{"image": f"asset:{ref}", "weight": 0.5}],
        "directions": [{"source": {"id": "dir_smile"}, "strength": {"from": 0, "to": 1}}],
        "generation": {"steps": 12, "guidance": {"max": 2.5}},
    }
    anchor = await new_anchor(client, body)
    assert anchor["id"].startswith("anc_") and anchor["version"] == anchor["latest_version"] == 1
    assert anchor["name"] == "house look" and anchor["seed"] == 7
    # only what the anchor holds: no defaults filled in, no nulls for the fields it left out
    assert anchor["generation"] == {"steps": 12, "guidance": {"max": 2.5}}
    assert "variation" not in anchor and "model" not in anchor
    fields = {k: v for k, v in anchor.items() if k in ("seed", "references", "directions", "generation")}
    assert anchor["sha256"] == fields_hash(fields)

    fetched = await client.get(f"/v1/anchors/{anchor['id']}", headers=AUTH_A)
    assert fetched.status_code == 200 and fetched.json() == anchor

    second = await client.post(f"/v1/anchors/{anchor['id']}/versions", json={"seed": 9}, headers=AUTH_A)
    assert second.status_code == 201, second.text
    v2 = second.json()
    assert v2["id"] == anchor["id"] and v2["version"] == 2 and v2["name"] == "house look"
    assert v2["seed"] == 9 and "references" not in v2  # a version is the whole bundle, nothing carried over
    assert v2["sha256"] != anchor["sha256"]

    # version 1 is unchanged; the anchor set answers at its latest version
    v1 = (await client.get(f"/v1/anchors/{anchor['id']}/versions/1", headers=AUTH_A)).json()
    assert v1 == {**anchor, "latest_version": 2}
    assert (await client.get(f"/v1/anchors/{anchor['id']}", headers=AUTH_A)).json()["version"] == 2
    assert_problem(await client.get(f"/v1/anchors/{anchor['id']}/versions/3", headers=AUTH_A), 404)

    other = await new_anchor(client, {"name": "plain", "model": "svd"})
    listed = (await client.get("/v1/anchors", params={"limit": 1}, headers=AUTH_A)).json()
    assert [a["id"] for a in listed["items"]] == [other["id"]] and listed["next_cursor"] == other["id"]
    rest = await client.get("/v1/anchors", params={"cursor": listed["next_cursor"]}, headers=AUTH_A)
    assert [(a["id"], a["version"]) for a in rest.json()["items"]] == [(anchor["id"], 2)]
    assert rest.json()["next_cursor"] is None

    deleted = await client.delete(f"/v1/anchors/{anchor['id']}", headers=AUTH_A)
    assert deleted.status_code == 204
    assert_problem(await client.get(f"/v1/anchors/{anchor['id']}", headers=AUTH_A), 404)
    assert_problem(await client.delete(f"/v1/anchors/{anchor['id']}", headers=AUTH_A), 404)
    assert_problem(await client.post(f"/v1/anchors/{anchor['id']}/versions", json={}, headers=AUTH_A), 404)
    listed = (await client.get("/v1/anchors", headers=AUTH_A)).json()
    assert [a["id"] for a in listed["items"]] == [other["id"]]


async def test_another_tenants_anchor_is_404_everywhere(api: Api) -> None:
    client = api.client
    anchor = await new_anchor(client, {"name": "mine", "seed": 1})
    path = f"/v1/anchors/{anchor['id']}"
    assert_problem(await client.get(path, headers=AUTH_B), 404)
    assert_problem(await client.get(f"{path}/versions/1", headers=AUTH_B), 404)
    assert_problem(await client.post(f"{path}/versions", json={"seed": 2}, headers=AUTH_B), 404)
    assert_problem(await client.delete(path, headers=AUTH_B), 404)
    assert (await client.get("/v1/anchors", headers=AUTH_B)).json()["items"] == []
    # nor can a job of the other tenant cite it
    image = await upload_image(client, AUTH_B)
    body = assert_problem(await submit(client, {"image": f"asset:{image}", "anchor": anchor["id"]}, AUTH_B), 422)
    assert body["field"] == "anchor" and body["errors"][0]["rule"] == "unknown_anchor"
    # and the owner still has it, unchanged
    assert (await client.get(path, headers=AUTH_A)).json() == anchor


async def test_jobs_get_the_merged_document_and_cite_the_version(api: Api) -> None:
    client = api.client
    ref, style, image = [await upload_image(client) for _ in range(3)]
    anchor = await new_anchor(
        client,
        {
            "name": "look",
            "model": "svd",
            "seed": 11,
            "references": [{"image": f"asset:{ref}", "weight": 0.5}, {"image": f"asset:{ref}", "weight": 1.0}],
            "style": {"image": f"asset:{style}", "strength": 0.7},
            "generation": {"steps": 12, "fps": 9, "guidance": {"min": 0.5, "max": 2.0}},
            "variation": {"seed": 3, "strength": 0.2},
        },
    )
    v2 = (await client.post(f"/v1/anchors/{anchor['id']}/versions", json={"seed": 99}, headers=AUTH_A)).json()

    # version 1, cited explicitly; the job's own fields win, objects merge, lists replace, null removes
    doc = {
        "image": f"asset:{image}",
        "anchor": f"{anchor['id']}@1",
        "generation": {"steps": 4, "guidance": {"max": 3.0}},
        "references": [{"image": f"asset:{ref}", "weight": 2.0}],
        "style": {"image": f"asset:{style}", "strength": 0.1},
        "variation": None,
    }
    response = await submit(client, doc)
    assert response.status_code == 202, response.text
    job = response.json()
    request = job["request"]
    assert request["anchor"] == {"id": anchor["id"], "version": 1, "sha256": anchor["sha256"]}
    assert job["model"] == request["model"] == "svd" and request["seed"] == 11
    generation = request["generation"]
    assert (generation["steps"], generation["fps"]) == (4, 9)
    assert generation["guidance"] == {"min": 0.5, "max": 3.0, "shape": "linear"}
    assert request["references"] == [{"image": f"asset:{ref}", "weight": 2.0}]
    assert request["style"]["strength"] == 0.1 and request["variation"] is None
    # the stored job, which the worker reads and writes into the manifest's request, is the merged one
    stored = (await client.get(f"/v1/jobs/{job['id']}", headers=AUTH_A)).json()
    assert stored["request"] == request

    # no version: the latest
    latest = (await submit(client, {"image": f"asset:{image}", "anchor": anchor["id"]})).json()["request"]
    assert latest["anchor"] == {"id": anchor["id"], "version": 2, "sha256": v2["sha256"]}
    assert latest["seed"] == 99 and latest["references"] == [] and latest["model"] == "svd-xt"

    # a document with the anchor merged already (a replayed manifest's request) needs the anchor no more
    await client.delete(f"/v1/anchors/{anchor['id']}", headers=AUTH_A)
    replay = await submit(client, request)
    assert replay.status_code == 202, replay.text
    assert replay.json()["request"] == request

    # but a job citing the deleted anchor set is refused
    body = assert_problem(await submit(client, doc), 422, field="anchor")
    assert body["errors"][0]["rule"] == "unknown_anchor" and anchor["id"] in body["detail"]


async def test_rules_between_the_job_and_its_anchor_hold_on_the_merged_document(api: Api) -> None:
    client = api.client
    image = await upload_image(client)
    with_direction = await new_anchor(client, {"name": "d", "directions": [{"source": {"vector": [1.0, 0.0]}}]})
    # the sweep indexes the anchor's directions: valid only merged
    sweep = {"target": "direction", "to": 2.0, "count": 2, "direction": 0}
    ok = await submit(client, {"image": f"asset:{image}", "anchor": with_direction["id"], "sweep": sweep})
    assert ok.status_code == 202, ok.text
    body = assert_problem(await submit(client, {"image": f"asset:{image}", "sweep": sweep}), 422)
    assert body["field"] == "sweep.direction"
    # a seed sweep excludes the anchor's variation
    varied = await new_anchor(client, {"name": "v", "variation": {"seed": 2, "strength": 0.5}})
    seed_sweep = {"target": "seed", "to": 5, "count": 2}
    doc = {"image": f"asset:{image}", "anchor": varied["id"], "sweep": seed_sweep}
    body = assert_problem(await submit(client, doc), 422, field="variation")
    assert body["title"] == "Invalid job document"
    assert body["errors"][0]["rule"] == "sweep_seed_without_variation"
    # merged guidance breaks min <= max
    low = await new_anchor(client, {"name": "g", "generation": {"guidance": {"min": 2.0, "max": 2.5}}})
    doc = {"image": f"asset:{image}", "anchor": low["id"], "generation": {"guidance": {"max": 1.5}}}
    body = assert_problem(await submit(client, doc), 422, field="generation.guidance.min")


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"name": "x", "image": "asset:a"}, "image", "extra_forbidden"),
        ({"name": "x", "keyframes": [{"image": "asset:a", "at": 0}]}, "keyframes", "extra_forbidden"),
        ({"name": "x", "sweep": {"target": "seed", "to": 2, "count": 2}}, "sweep", "extra_forbidden"),
        ({"seed": 1}, "name", "missing"),
        ({"name": "x", "seed": -1}, "seed", "greater_than_equal"),
        ({"name": "x", "seed": "5"}, "seed", "int_type"),
        ({"name": "x", "generation": {"width": 100}}, "generation.width", "multiple_of"),
        ({"name": "x", "generation": {"guidance": {"min": 3, "max": 1}}}, "generation.guidance.min", "min_at_most_max"),
        (
            {"name": "x", "directions": [{"source": {"id": "dir_d"}, "steps": [0, 1]}]},
            "directions[0].steps",
            "needs_latent_space",
        ),
        ({"name": "x", "style": {"image": "asset:s", "strength": 1, "steps": [0.6, 0.2]}}, "style.steps", "window"),
        ({"name": "x", "references": [{"image": "asset:a", "weight": 11}]}, "references[0].weight", "less_than_equal"),
        ({"name": "x", "negative_image": "asset:../x"}, "negative_image", "value_error"),
    ],
)
async def test_invalid_anchor_fields_are_422_naming_the_field(api: Api, body: dict, field: str, rule: str) -> None:
    problem = assert_problem(await create(api.client, body), 422, field=field)
    assert problem["errors"][0]["rule"] == rule
    assert problem["title"] == "Invalid anchor set"


async def test_an_anchor_must_cite_what_exists(api: Api) -> None:
    client = api.client
    image = await upload_image(client)
    cases = [
        ({"references": [{"image": f"asset:{image}", "weight": 1}, {"image": "asset:ast_gone", "weight": 1}]},
         "references[1].image", "unknown_asset"),
        ({"style": {"image": "asset:ast_gone", "strength": 1}}, "style.image", "unknown_asset"),
        ({"negative_image": "/home/me/neg.png"}, "negative_image", "no_local_paths"),
        ({"directions": [{"source": {"id": "dir_gone"}}]}, "directions[0].source.id", "unknown_direction"),
        ({"directions": [{"source": {"vector": [1.0]}, "preserve": [{"id": "dir_gone"}]}]},
         "directions[0].preserve[0].id", "unknown_direction"),
        ({"model": "sdxl"}, "model", "known_model"),
    ]  # fmt: skip
    for fields, field, rule in cases:
        body = assert_problem(await create(client, {"name": "x", **fields}), 422, field=field)
        assert body["errors"][0]["rule"] == rule, body
        assert body["title"] == "Invalid anchor set"
    # another tenant's asset is as missing as no asset
    theirs = await upload_image(client, AUTH_B)
    body = {"name": "x", "references": [{"image": f"asset:{theirs}", "weight": 1}]}
    assert_problem(await create(client, body), 422, field="references[0].image")
    # a new version is checked the same way
    anchor = await new_anchor(client, {"name": "ok", "seed": 1})
    again = await client.post(
        f"/v1/anchors/{anchor['id']}/versions",
        json={"style": {"image": "asset:ast_gone", "strength": 1}},
        headers=AUTH_A,
    )
    assert_problem(again, 422, field="style.image")
    schema = await client.post(f"/v1/anchors/{anchor['id']}/versions", json={"keyframes": []}, headers=AUTH_A)
    assert assert_problem(schema, 422, field="keyframes")["title"] == "Invalid anchor set"
    assert (await client.get(f"/v1/anchors/{anchor['id']}", headers=AUTH_A)).json()["latest_version"] == 1


async def test_a_job_using_an_anchor_checks_its_direction_still_exists(api: Api) -> None:
    client = api.client
    image = await upload_image(client)
    api.store_direction("tenant-a", "dir_smile")
    anchor = await new_anchor(client, {"name": "d", "directions": [{"source": {"id": "dir_smile"}}]})
    ok = await submit(client, {"image": f"asset:{image}", "anchor": anchor["id"]})
    assert ok.status_code == 202, ok.text
    api.app.state.storage.delete("directions/tenant-a/dir_smile.safetensors")
    body = assert_problem(await submit(client, {"image": f"asset:{image}", "anchor": anchor["id"]}), 422)
    assert body["field"] == "directions[0].source.id" and body["errors"][0]["rule"] == "unknown_direction"


async def test_bad_citations_are_422(api: Api) -> None:
    image = await upload_image(api.client)
    for citation in ["anc_", "anc_x@0", "job_123", "anc_x@two"]:
        body = assert_problem(await submit(api.client, {"image": f"asset:{image}", "anchor": citation}), 422)
        assert body["field"] == "anchor" and body["errors"][0]["rule"] == "anchor_citation", body
    anchor = await new_anchor(api.client, {"name": "x", "seed": 1})
    body = assert_problem(await submit(api.client, {"image": f"asset:{image}", "anchor": f"{anchor['id']}@2"}), 422)
    assert body["field"] == "anchor" and body["errors"][0]["rule"] == "unknown_anchor"
