"""Asset uploads: sniffed content, decoded images within the pixel limit, size limits, storage layout."""

import hashlib
import io

import httpx
import pytest
from PIL import Image

from service.settings import Settings
from storage.local import LocalStorage
from tests.service.conftest import AUTH_A, AUTH_B, assert_problem, png, upload
from tests.videos import clip

pytestmark = pytest.mark.anyio


async def test_image_upload_is_sniffed_decoded_and_stored(client: httpx.AsyncClient, settings: Settings) -> None:
    data = png(96, 64)
    # The declared name and type say JPEG; the bytes say PNG, and the bytes win.
    response = await client.post("/v1/assets", files={"file": ("photo.jpg", data, "image/jpeg")}, headers=AUTH_A)
    assert response.status_code == 201, response.text
    asset = response.json()
    assert asset["id"].startswith("ast_") and asset["kind"] == "image"
    assert asset["content_type"] == "image/png"
    assert (asset["width"], asset["height"], asset["bytes"]) == (96, 64, len(data))
    assert asset["sha256"] == hashlib.sha256(data).hexdigest()
    stored = LocalStorage(settings.storage_local_dir, secret="x").get(f"assets/tenant-a/{asset['id']}")
    assert stored == data
    assert (await client.get(f"/v1/assets/{asset['id']}", headers=AUTH_A)).json() == asset
    assert_problem(await client.get(f"/v1/assets/{asset['id']}", headers=AUTH_B), 404)


async def test_jpeg_and_video_uploads(client: httpx.AsyncClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="JPEG")
    jpeg = (await upload(client, buf.getvalue(), name="x.bin")).json()
    assert (jpeg["content_type"], jpeg["width"], jpeg["height"]) == ("image/jpeg", 40, 30)
    webm = (await upload(client, clip(codec="libvpx-vp9", fmt="webm"), name="v.bin")).json()
    assert (webm["kind"], webm["content_type"], webm["width"]) == ("video", "video/webm", 64)


async def test_not_an_image_or_video_is_415(client: httpx.AsyncClient) -> None:
    body = assert_problem(await upload(client, b"#!/bin/sh\nrm -rf /\n", name="x.png"), 415, field="file")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("file", "media_type")]
    assert "PNG" in body["detail"]


async def test_truncated_image_is_422(client: httpx.AsyncClient) -> None:
    body = assert_problem(await upload(client, png(64, 64)[:80]), 422, field="file")
    assert body["errors"][0]["rule"] == "image_decodable"


async def test_an_image_with_a_side_under_8_pixels_is_422(client: httpx.AsyncClient) -> None:
    body = assert_problem(await upload(client, png(200, 1)), 422, field="file")
    assert body["errors"][0]["rule"] == "min_image_side"
    assert "200x1 pixels; each side must be 8 or more" in body["detail"]
    assert (await upload(client, png(8, 8))).status_code == 201


@pytest.mark.parametrize("side", [600, 2048])  # between 1x and 2x the limit (Pillow warns), and far over it
async def test_decompression_bomb_is_refused_naming_the_rule(client: httpx.AsyncClient, side: int) -> None:
    bomb = png(side, side, mode="1")  # a few KiB on the wire, `side`² pixels decoded
    assert len(bomb) < 16 * 1024
    body = assert_problem(await upload(client, bomb), 413, field="file")
    assert "limit" in body["detail"] and str(512 * 512) in body["detail"]


async def test_oversized_upload_is_413(client: httpx.AsyncClient) -> None:
    too_big = png() + b"\x00" * (400 * 1024)
    assert_problem(await upload(client, too_big), 413)

    async def chunks():  # no Content-Length: refused while streaming
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        for _ in range(64):
            yield b"\x00" * 8192

    streamed = await client.post(
        "/v1/assets", content=chunks(), headers={**AUTH_A, "content-type": "multipart/form-data; boundary=b"}
    )
    assert_problem(streamed, 413)


async def test_missing_file_field_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/assets", files={"other": ("a.png", png(), "image/png")}, headers=AUTH_A)
    assert_problem(response, 422, field="file")
