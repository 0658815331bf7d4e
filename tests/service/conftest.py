"""The API against a real redis-server and a local storage folder, driven through httpx."""

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from jobstate.store import JobStore
from service.app import create_app
from service.settings import Settings

KEY_A, KEY_B = "key-tenant-a", "key-tenant-b"
AUTH_A = {"Authorization": f"Bearer {KEY_A}"}
AUTH_B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sync_redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def store(redis_url: str) -> JobStore:
    """The worker's side of job state, to drive jobs the way a GPU worker does."""
    return JobStore.from_url(redis_url)


def make_settings(tmp_path: Path, redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "redis_url": redis_url,
        "dev_api_keys": {KEY_A: "tenant-a", KEY_B: "tenant-b"},
        "storage_backend": "local",
        "storage_local_dir": tmp_path / "storage",
        "files_secret": "test-files-secret",
        "public_base_url": "http://testserver",
        "max_upload_bytes": 256 * 1024,
        "max_json_bytes": 512 * 1024,
        "max_image_pixels": 512 * 512,
        "models": ["svd-xt", "svd"],
        "prefer_wait_max_s": 5,
        "sse_heartbeat_s": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return make_settings(tmp_path, redis_url)


async def open_client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_client(create_app(settings)):
        yield c


def png(width: int = 64, height: int = 64, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), color=0 if mode == "1" else (40, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


async def upload(
    client: httpx.AsyncClient, data: bytes, auth: dict[str, str] = AUTH_A, name: str = "a.png"
) -> httpx.Response:
    return await client.post("/v1/assets", files={"file": (name, data, "application/octet-stream")}, headers=auth)


async def page_ids(client: httpx.AsyncClient, path: str, limit: int, auth: dict[str, str] = AUTH_A) -> list[list[str]]:
    """The ids on each page of a list route, following `next_cursor` to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = await client.get(path, params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def upload_image(client: httpx.AsyncClient, auth: dict[str, str] = AUTH_A) -> str:
    response = await upload(client, png(), auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    if field is not None:
        assert body.get("field") == field, body
    return body
