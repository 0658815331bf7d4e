"""Browsers: CORS for the configured origins only, preflights answered, refusals readable by the page."""

from pathlib import Path

import pytest

from service.app import create_app
from tests.service.conftest import AUTH_A, make_settings, open_client

APP = "https://studio.example.com"


@pytest.mark.anyio
async def test_no_origin_is_allowed_by_default(settings):
    async for client in open_client(create_app(settings)):
        answer = await client.get("/v1/models", headers={**AUTH_A, "Origin": APP})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
        preflight = await client.options("/v1/jobs", headers=preflight_headers(APP))
        assert preflight.status_code == 405


@pytest.mark.anyio
async def test_a_configured_origin_gets_preflights_and_headers(tmp_path: Path, redis_url: str):
    settings = make_settings(tmp_path, redis_url, cors_origins=[APP])
    async for client in open_client(create_app(settings)):
        preflight = await client.options("/v1/jobs", headers=preflight_headers(APP))
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "last-event-id" in allowed
        assert "POST" in preflight.headers["access-control-allow-methods"]

        answer = await client.get("/v1/models", headers={**AUTH_A, "Origin": APP})
        assert answer.headers["access-control-allow-origin"] == APP
        # A refusal carries the header too, so the page can read its problem details.
        refused = await client.post("/v1/jobs", json={"seed": -1}, headers={**AUTH_A, "Origin": APP})
        assert refused.status_code == 422 and refused.headers["access-control-allow-origin"] == APP

        other = await client.options("/v1/jobs", headers=preflight_headers("https://elsewhere.example"))
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def test_cors_origins_are_read_from_the_environment(monkeypatch):
    from service.settings import Settings

    monkeypatch.setenv("VSTEER_CORS_ORIGINS", f'["{APP}"]')
    assert Settings(environment="test", dev_api_keys={"k": "t"}).cors_origins == [APP]  # type: ignore[call-arg]
