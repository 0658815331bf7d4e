"""Videos: uploads probed with PyAV and refused by rule; a job's `video` checked at submit and stored."""

import base64
from fractions import Fraction

import httpx
import pytest

from tests.service.conftest import AUTH_A, assert_problem, upload, upload_image
from tests.videos import audio_only, clip, huge_in_header, many_frame_gif
from vsteer.pictures import panning_clip

pytestmark = pytest.mark.anyio


def video_uri(raw: bytes, kind: str = "video/mp4") -> str:
    return f"data:{kind};base64," + base64.b64encode(raw).decode()


async def submit(client: httpx.AsyncClient, doc: dict) -> httpx.Response:
    return await client.post("/v1/jobs", json=doc, headers=AUTH_A)


def edit(source: str, frames: int = 5, **video: object) -> dict:
    return {"generation": {"num_frames": frames, "fps": 7}, "video": {"source": source, "strength": 0.5, **video}}


async def test_a_video_upload_is_probed_and_its_metadata_stored(client: httpx.AsyncClient) -> None:
    response = await upload(client, panning_clip(0, (96, 64), frames=12, fps=8), name="clip.bin")
    assert response.status_code == 201, response.text
    asset = response.json()
    assert (asset["kind"], asset["content_type"], asset["codec"]) == ("video", "video/mp4", "h264")
    assert (asset["width"], asset["height"], asset["frames"], asset["fps"]) == (96, 64, 12, 8.0)
    assert asset["duration"] == pytest.approx(1.5)
    assert (await client.get(f"/v1/assets/{asset['id']}", headers=AUTH_A)).json() == asset
    webm = (await upload(client, clip(codec="libvpx-vp9", fmt="webm"), name="v.webm")).json()
    assert (webm["content_type"], webm["codec"], webm["frames"]) == ("video/webm", "vp9", 12)


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        (lambda: clip()[:400], "video_decodable"),
        (lambda: b"\x1a\x45\xdf\xa3" + b"\x00" * 200, "video_decodable"),
        (lambda: clip((2, 2)), "min_video_side"),
        (lambda: huge_in_header(16000, 12000), "max_video_pixels"),
        (audio_only, "video_stream"),
        (lambda: clip((16, 16), frames=40, fps=Fraction(1, 20)), "max_video_seconds"),
    ],
    ids=["truncated", "garbage-webm", "2x2", "huge-header", "audio-only", "too-long"],
)
async def test_a_video_a_worker_cannot_use_is_422_naming_the_rule(client: httpx.AsyncClient, make, rule) -> None:
    body = assert_problem(await upload(client, make(), name="v.mp4"), 422, field="file")
    assert body["errors"][0]["rule"] == rule, body


async def test_a_job_edits_an_uploaded_video_long_enough_for_its_frames(client: httpx.AsyncClient) -> None:
    video = (await upload(client, panning_clip(0, (64, 64), frames=12, fps=8))).json()  # 1.5 s
    accepted = await submit(client, edit(f"asset:{video['id']}"))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["request"]["video"]["source"] == f"asset:{video['id']}"
    # 10 frames at 7 fps need the clip to run past 9/7 s from the start: from 0.5 s it ends at 1.5 s.
    body = assert_problem(await submit(client, edit(f"asset:{video['id']}", frames=10, start=0.5)), 422)
    assert body["errors"][0]["field"] == "video.start" and body["errors"][0]["rule"] == "video_long_enough"
    assert "1.500 s long" in body["errors"][0]["message"]


async def test_an_inline_video_is_checked_and_stored_as_an_asset(client: httpx.AsyncClient) -> None:
    raw = panning_clip(1, (64, 64), frames=12, fps=8)
    accepted = await submit(client, edit(video_uri(raw)))
    assert accepted.status_code == 202, accepted.text
    source = accepted.json()["request"]["video"]["source"]
    assert source.startswith("asset:")
    asset = (await client.get(f"/v1/assets/{source.removeprefix('asset:')}", headers=AUTH_A)).json()
    assert (asset["kind"], asset["frames"], asset["bytes"]) == ("video", 12, len(raw))


@pytest.mark.parametrize(
    ("source", "field", "rule"),
    [
        (lambda: video_uri(clip()[:400]), "video.source", "video_decodable"),
        (lambda: video_uri(many_frame_gif(), "video/gif"), "video.source", "video_format"),
        (lambda: video_uri(clip(frames=3)), "video.start", "video_long_enough"),
        (lambda: "clip.mp4", "video.source", "no_local_paths"),
        (lambda: "asset:ast_00000000000000000000000000ff", "video.source", "unknown_asset"),
    ],
    ids=["truncated-inline", "gif-as-video", "too-short-inline", "local-path", "unknown-asset"],
)
async def test_a_video_source_a_worker_cannot_use_is_422(client: httpx.AsyncClient, source, field, rule) -> None:
    body = assert_problem(await submit(client, edit(source())), 422)
    assert (body["errors"][0]["field"], body["errors"][0]["rule"]) == (field, rule), body


async def test_an_image_asset_is_not_a_video(client: httpx.AsyncClient) -> None:
    image = await upload_image(client)
    body = assert_problem(await submit(client, edit(f"asset:{image}")), 422)
    assert body["errors"][0]["rule"] == "video_asset"


@pytest.mark.parametrize(
    "video",
    [
        {"source": "https://example.com/a.mp4", "strength": 0.5},
        {"source": "data:image/png;base64,AAAA", "strength": 0.5},
        {"source": "asset:x", "strength": 1.5},
        {"source": "asset:x", "strength": "0.5"},
        {"source": "asset:x", "strength": 0.5, "fit": "zoom"},
        {"source": "asset:x", "strength": 0.5, "noise": "ddim"},
        {"source": "asset:x", "strength": 0.5, "start": -1},
        {"source": "asset:x", "strength": 0.5, "loop": True},
        {"strength": 0.5},
    ],
)
async def test_bad_video_fields_are_422_naming_the_field(client: httpx.AsyncClient, video: dict) -> None:
    body = assert_problem(await submit(client, {"video": video}), 422)
    assert all(e["field"].startswith("video") for e in body["errors"]), body
