"""Listing a tenant's assets: newest first, paged by cursor, scoped to the tenant, bounded pages."""

import httpx
import pytest

from tests.service.conftest import AUTH_A, AUTH_B, assert_problem, png, upload

pytestmark = pytest.mark.anyio


async def test_assets_are_listed_newest_first_in_pages_per_tenant(client: httpx.AsyncClient) -> None:
    mine = [(await upload(client, png(16 + i, 16))).json()["id"] for i in range(3)]
    theirs = (await upload(client, png(20, 20), auth=AUTH_B)).json()["id"]

    first = (await client.get("/v1/assets", params={"limit": 2}, headers=AUTH_A)).json()
    assert [a["id"] for a in first["items"]] == [mine[2], mine[1]]
    assert first["items"][0]["width"] == 18 and first["next_cursor"] == mine[1]
    rest = (await client.get("/v1/assets", params={"limit": 2, "cursor": first["next_cursor"]}, headers=AUTH_A)).json()
    assert [a["id"] for a in rest["items"]] == [mine[0]] and rest["next_cursor"] is None

    other = (await client.get("/v1/assets", headers=AUTH_B)).json()
    assert [a["id"] for a in other["items"]] == [theirs]
    # What a list shows is what the asset's own route shows.
    one = (await client.get(f"/v1/assets/{mine[0]}", headers=AUTH_A)).json()
    assert rest["items"][0] == one


async def test_bad_pages_are_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/assets", params={"limit": 101}, headers=AUTH_A), 422)
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("limit", "less_than_equal")]
    body = assert_problem(await client.get("/v1/assets", params={"cursor": "job_x"}, headers=AUTH_A), 422)
    assert body["errors"][0]["field"] == "cursor"
    assert_problem(await client.get("/v1/assets"), 401)
