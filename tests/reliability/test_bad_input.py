"""Item 7: a catalogue of bad input, each answered with a clear 4xx problem+json (never a 5xx), and
a worker that survives what gets past the API. SSRF cases go through the webhook guard (and the
remote-image guard); a redirect to an internal address is never followed by webhook delivery."""

import base64
import io
import json
import struct
import threading
import zlib
from collections.abc import Callable
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from PIL import Image

from api_schemas import JobStatus
from tests import videos
from tests.reliability.conftest import TENANT_A, record_figures, standin_job, tiny_png, wait_terminal
from webhooks.delivery import deliver

pytestmark = [pytest.mark.integration]

UPLOAD_LIMIT = 8 * 1024 * 1024
JSON_LIMIT = 2 * 1024 * 1024


def _png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming huge dimensions, with a tiny IDAT: decoding it would need ~30 GB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _corrupt_png() -> bytes:
    data = bytearray(tiny_png())
    middle = len(data) // 2
    data[middle : middle + 32] = b"\xff" * 32
    return bytes(data)


def _data_uri(raw: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(raw).decode()


def _job(**fields) -> dict:
    doc = standin_job()
    doc.update(fields)
    return doc


def _strength(literal: str) -> bytes:
    """A job whose `variation.strength` is `literal`, a JSON token Python's json would not write."""
    return json.dumps(_job(variation={"seed": 1, "strength": 0.5})).replace("0.5", literal).encode()


def _nested(depth: int) -> str:
    return '{"metadata": ' + "[" * depth + "]" * depth + "}"


def _chunks(total: int, size: int = 1024 * 1024):
    block = b"\0" * size
    for _ in range(total // size):
        yield block


def _multipart_chunks(total: int):
    yield b'--vsteerboundary\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    yield b"Content-Type: image/png\r\n\r\n"
    yield from _chunks(total)
    yield b"\r\n--vsteerboundary--\r\n"


def _gif_bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen 65535 x 65535
    return bytes(data)


def _cases(job_id: str) -> list[tuple[str, Callable[[httpx.Client], httpx.Response]]]:
    png = tiny_png()
    Send = Callable[[httpx.Client], httpx.Response]

    def up(raw: bytes, name: str = "a.png", ctype: str = "image/png") -> Send:
        return lambda c: c.post("/v1/assets", files={"file": (name, raw, ctype)})

    def job(**fields: object) -> Send:
        return lambda c: c.post("/v1/jobs", json=_job(**fields))

    def gen(**fields: object) -> Send:
        return job(generation={"num_frames": 3, "width": 64, "height": 64, "steps": 2, **fields})

    def raw_job(body: bytes, ctype: str = "application/json") -> Send:
        return lambda c: c.post("/v1/jobs", content=body, headers={"content-type": ctype})

    def hook(url: str) -> Send:
        return job(webhook={"url": url})

    def stored_direction(**body: object) -> Send:
        return lambda c: c.post("/v1/directions", json={"model": "tiny", **body})

    def video(source: str, **fields: object) -> Send:
        return job(video={"source": source, "strength": 0.5, **fields})

    def fit(**body: object) -> Send:
        return lambda c: c.post("/v1/directions", json={"model": "tiny", **body})

    three = ["asset:ast_a", "asset:ast_b", "asset:ast_c"]

    mp4 = videos.clip()

    return [
        # uploads
        ("truncated PNG upload", up(png[: len(png) // 2])),
        ("corrupt PNG upload", up(_corrupt_png())),
        ("non-image bytes upload", up(b"#!/bin/sh\nrm -rf /\n" * 10, "x.png")),
        ("decompression bomb PNG 100000x100000", up(_png_bomb())),
        ("decompression bomb GIF 65535x65535", up(_gif_bomb(), "a.gif", "image/gif")),
        ("zero-byte upload", up(b"")),
        ("1x200 image upload (a side under 8 pixels)", up(tiny_png(size=(1, 200)))),
        ("PNG declared as video/mp4 holding text", up(b"hello world" * 10, "a.mp4", "video/mp4")),
        ("JSON body to the upload route", lambda c: c.post("/v1/assets", json={"file": "x"})),
        ("100 MB upload (Content-Length)", lambda c: c.post("/v1/assets", content=b"\0" * (100 * 1024 * 1024))),
        (
            "100 MB multipart upload (chunked, no length)",
            lambda c: c.post(
                "/v1/assets",
                content=_multipart_chunks(100 * 1024 * 1024),
                headers={"content-type": "multipart/form-data; boundary=vsteerboundary"},
            ),
        ),
        ("100 MB job document", raw_job(b'{"metadata": {"a": "' + b"x" * (100 * 1024 * 1024) + b'"}}')),
        # job documents
        ("job as text/plain", raw_job(json.dumps(standin_job()).encode(), "text/plain")),
        ("empty body", raw_job(b"")),
        ("invalid JSON", raw_job(b'{"model": "tiny",')),
        ("a JSON array instead of an object", raw_job(b"[1, 2, 3]")),
        ("negative seed", job(seed=-1)),
        ("seed over 2**64", job(seed=2**70)),
        ("negative width", gen(width=-64)),
        ("width not a multiple of 64", gen(width=100)),
        ("a billion frames", gen(num_frames=10**9)),
        ("NaN in JSON", raw_job(_strength("NaN"))),
        ("Infinity in JSON", raw_job(_strength("Infinity"))),
        ("1e400 in JSON", raw_job(_strength("1e400"))),
        ("unknown top-level field", job(evil=True)),
        ("unknown nested field", gen(evil=True)),
        (
            "10,000 keyframes",
            job(image=None, keyframes=[{"image": f"asset:ast_{i:028x}", "at": i / 9999} for i in range(10_000)]),
        ),
        ("bidirectional interpolation with an image, no keyframes", job(interpolation="bidirectional")),
        (
            "bidirectional interpolation with three keyframes",
            job(
                image=None,
                interpolation="bidirectional",
                keyframes=[{"image": f"asset:ast_{i:028x}", "at": i / 2} for i in range(3)],
            ),
        ),
        (
            "bidirectional interpolation with the last keyframe before the end",
            job(
                image=None,
                interpolation="bidirectional",
                keyframes=[{"image": f"asset:ast_{i:028x}", "at": i / 2} for i in range(2)],
            ),
        ),
        (
            "a geodesic corpus of 63 images",
            job(
                image=None,
                interpolation="geodesic",
                keyframes=[{"image": f"asset:ast_{i:028x}", "at": i} for i in range(2)],
                corpus=[f"asset:ast_{i:028x}" for i in range(63)],
            ),
        ),
        ("a corpus without a geodesic path", job(corpus=[f"asset:ast_{i:028x}" for i in range(64)])),
        (
            "a geodesic corpus of unknown assets",
            job(
                sweep={"target": "image", "to": "asset:ast_" + "0" * 28, "count": 2, "interpolation": "geodesic"},
                corpus=[f"asset:ast_{i:028x}" for i in range(64)],
            ),
        ),
        ("17 segments", job(segments={"count": 17})),
        (
            "a segment overlap as long as the clip",
            job(generation={"num_frames": 3}, segments={"count": 2, "overlap": 3}),
        ),
        ("a storyboard one image short", job(segments={"count": 3, "images": ["asset:ast_" + "0" * 28]})),
        ("segments with a sweep", job(segments={"count": 2}, sweep={"target": "seed", "to": 2, "count": 2})),
        ("deeply nested JSON (depth 100,000)", raw_job(_nested(100_000).encode())),
        ("deeply nested JSON (depth 1,000)", raw_job(_nested(1_000).encode())),
        ("truncated PNG in a data URI", job(image=_data_uri(png[:100]))),
        ("text in an image data URI", job(image=_data_uri(b"not an image at all"))),
        ("bad base64 in a data URI", job(image="data:image/png;base64,@@@@")),
        ("decompression bomb in a data URI", job(image=_data_uri(_png_bomb()))),
        ("2x2 image in a data URI (a side under 8 pixels)", job(image=_data_uri(tiny_png(size=(2, 2))))),
        ("path traversal asset id", job(image="asset:../../etc/passwd")),
        ("unknown asset id", job(image="asset:ast_00000000000000000000000000ff")),
        ("local path image", job(image="/etc/passwd")),
        ("remote image URL (disabled)", job(image="http://169.254.169.254/latest/meta-data/")),
        ("unknown model", job(model="../../models/evil")),
        ("unicode in metadata key over the limit", job(metadata={"ключ" * 40: 1})),
        # videos: uploads probed with PyAV, and a job's `video`
        ("truncated MP4 upload", up(mp4[:400], "a.mp4", "video/mp4")),
        ("WebM upload with a video track and zero frames", up(videos.header_only(), "a.webm", "video/webm")),
        ("1x1 video upload", up(videos.clip((1, 1), codec="ffv1", fmt="matroska", pix_fmt="yuv444p"), "a.mkv")),
        ("video claiming 16000x12000 in its headers", up(videos.huge_in_header(16000, 12000), "a.mp4")),
        ("video claiming 65535x65535 in its headers", up(videos.huge_in_header(), "a.mp4")),
        ("audio-only MP4 upload", up(videos.audio_only(), "a.m4a", "audio/mp4")),
        ("video of 800 s (over the limit)", up(videos.clip((16, 16), frames=40, fps=Fraction(1, 20)), "a.mp4")),
        ("video of 3,601 frames (over the limit)", up(videos.clip((16, 16), frames=3601, fps=30), "a.mp4")),
        ("GIF of 10,000 frames as a video data URI", video(_data_uri(videos.many_frame_gif(), "video/gif"))),
        ("PNG in a video/mp4 data URI", video(_data_uri(png, "video/mp4"))),
        ("bad base64 in a video data URI", video("data:video/mp4;base64,@@@@")),
        ("truncated MP4 in a video data URI", video(_data_uri(mp4[:400], "video/mp4"))),
        ("video too short for the job's frames", video(_data_uri(videos.clip(frames=1), "video/mp4"))),
        ("an image asset as the video", lambda c: video("asset:" + up(png)(c).json()["id"])(c)),
        ("video from a remote URL", video("https://example.com/clip.mp4")),
        ("video from a local path", video("/etc/passwd")),
        ("video strength 2", video("asset:ast_00000000000000000000000000ff", strength=2)),
        ("video fit not one of crop, pad, stretch", video("asset:ast_00000000000000000000000000ff", fit="zoom")),
        # SSRF through the webhook
        ("webhook to 127.0.0.1", hook("http://127.0.0.1:6379/")),
        ("webhook to localhost", hook("http://localhost/hook")),
        ("webhook to 169.254.169.254 (cloud metadata)", hook("http://169.254.169.254/latest/meta-data/")),
        ("webhook to [::ffff:127.0.0.1]", hook("http://[::ffff:127.0.0.1]/hook")),
        ("webhook to [::1]", hook("http://[::1]/hook")),
        ("webhook to 10.0.0.1 (private)", hook("http://10.0.0.1/hook")),
        ("webhook to 2130706433 (127.0.0.1 as a number)", hook("http://2130706433/hook")),
        ("webhook to 0.0.0.0", hook("http://0.0.0.0/hook")),
        ("webhook with a file: scheme", hook("file:///etc/passwd")),
        # ids in paths and queries
        ("unicode job id", lambda c: c.get("/v1/jobs/ジョブ")),
        ("path traversal job id", lambda c: c.get("/v1/jobs/..%2F..%2Fetc%2Fpasswd")),
        ("job id of 1,000 characters", lambda c: c.get("/v1/jobs/" + "a" * 1000)),
        ("path traversal result name", lambda c: c.get(f"/v1/jobs/{job_id}/result/..%2F..%2Fsecret")),
        ("path traversal file key", lambda c: c.get("/v1/files/..%2F..%2Fetc%2Fpasswd?expires=9999999999&sig=00")),
        ("unicode asset id", lambda c: c.get("/v1/assets/%F0%9F%92%A3")),
        ("negative page limit", lambda c: c.get("/v1/jobs", params={"limit": -1})),
        ("garbage cursor", lambda c: c.get("/v1/jobs", params={"cursor": "' OR 1=1 --"})),
        ("unknown status filter", lambda c: c.get("/v1/jobs", params={"status": "hacked"})),
        (
            "Idempotency-Key of 300 characters",
            lambda c: c.post("/v1/jobs", json=_job(), headers={"Idempotency-Key": "k" * 300}),
        ),
        # stored directions
        ("a direction of the wrong width", stored_direction(vector=[1.0, 2.0, 3.0], space="latent")),
        ("a direction of zeros", stored_direction(vector=[0.0] * 4, space="latent")),
        ("a direction of another model's width", stored_direction(vector=[1.0] * 1024, space="embedding")),
        ("a direction for a model that is not served", stored_direction(vector=[1.0] * 4, model="sdxl")),
        ("a direction in an unknown space", stored_direction(vector=[1.0] * 4, space="pixels")),
        ("a direction with a string among its values", stored_direction(vector=[1.0, "2", 3.0, 4.0])),
        (
            "a direction file that is not safetensors",
            lambda c: c.post(
                "/v1/directions",
                files={"file": ("d.safetensors", b"not a tensor file", "application/octet-stream")},
                data={"model": "tiny", "space": "latent"},
            ),
        ),
        (
            "a job citing a direction nobody stored",
            job(directions=[{"source": {"id": "dir_missing"}, "space": "latent"}]),
        ),
        ("another tenant's direction id shape", lambda c: c.get("/v1/directions/..%2F..%2Fetc")),
        # text directions: svd is served without a text encoder here (tiny has its tiny one)
        (
            "a text direction on a model without a text encoder",
            job(model="svd", directions=[{"source": {"text": "a smiling face", "from_text": "a neutral face"}}]),
        ),
        ("a text direction in the latent space", job(directions=[{"source": {"text": "a face"}, "space": "latent"}])),
        ("from_text without text", job(directions=[{"source": {"vector": [1.0] * 32, "from_text": "a face"}}])),
        # fitting directions over HTTP
        ("a fit by an unknown method", fit(method="lda", images=three)),
        ("a fit with too few images for its method", fit(method="pca", images=three[:1])),
        ("a fit with labels of the wrong count", fit(method="probe", images=three, labels=[1, 0])),
        ("a fit on images nobody uploaded", fit(method="pca", images=three)),
        ("a fit with pairs of unknown assets", fit(method="contrastive", pairs=[["asset:ast_no", "asset:ast_ne"]])),
        ("a fit on an image URL", fit(method="pca", images=["https://example.com/a.png", *three])),
        ("a text fit on a model without a text encoder", fit(method="text", model="svd", text="a smiling face")),
        ("a fit nobody made", lambda c: c.get("/v1/directions/fits/job_0123456789abcdef0123456789ab")),
        ("cancel of a fit id of 70 characters", lambda c: c.post("/v1/directions/fits/" + "a" * 70 + "/cancel")),
    ]


class _Redirector(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    location = ""

    def do_POST(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(302 if self.path == "/hook" else 204)
        self.send_header("Location", type(self).location)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_bad_input_is_refused_with_4xx_problem_details_and_the_worker_lives(stack_factory):
    stack = stack_factory(
        api_env={
            "VSTEER_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
            "VSTEER_MAX_JSON_BYTES": str(JSON_LIMIT),
            "VSTEER_MAX_IMAGE_PIXELS": str(1024 * 1024),
            "VSTEER_MODELS": json.dumps(["tiny", "svd"]),
        }
    )
    stack.start_api()
    worker = stack.start_worker()
    store = stack.store()
    outcomes = []
    with stack.client(timeout=60) as client:
        ok = client.post("/v1/jobs", json=standin_job())
        assert ok.status_code == 202
        job_id = ok.json()["id"]
        for name, send in _cases(job_id):
            try:
                response = send(client)
                status, ctype = response.status_code, response.headers.get("content-type", "")
                body = response.json() if ctype.startswith("application/problem+json") else {}
            except httpx.HTTPError as exc:  # the server may close a connection that streams too much
                status, ctype, body = None, "", {"detail": f"{type(exc).__name__}"}
            outcomes.append(
                {
                    "case": name,
                    "status": status,
                    "problem_json": ctype.startswith("application/problem+json"),
                    "detail": (body.get("detail") or "")[:160],
                }
            )

        # what gets past the API: an uploaded image whose stored bytes go bad fails its job, not the worker
        asset = client.post("/v1/assets", files={"file": ("a.png", tiny_png(), "image/png")}).json()["id"]
        (stack.storage_dir / "assets" / TENANT_A / asset).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        bad = client.post("/v1/jobs", json=standin_job(image=f"asset:{asset}")).json()["id"]
        good = client.post("/v1/jobs", json=standin_job()).json()["id"]
        final = wait_terminal(store, TENANT_A, [job_id, bad, good], 60, stack.worker_logs())

    # a redirect to an internal address is not followed by webhook delivery
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    _Redirector.location = f"http://127.0.0.1:{port}/internal"
    try:
        # allow_private: the receiver itself is on loopback; the point is the redirect is not followed
        delivery = deliver(
            f"http://127.0.0.1:{port}/hook",
            "{}",
            "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUE=",
            "msg_1",
            allow_private=True,
        )
    finally:
        server.shutdown()
        server.server_close()
    outcomes.append(
        {
            "case": "webhook answered with a redirect to an internal address",
            "status": delivery.status_code,
            "problem_json": None,
            "detail": f"not followed: internal hits {_Redirector.hits.count('/internal')}, delivery ok={delivery.ok}",
        }
    )

    http_cases = [o for o in outcomes if o["problem_json"] is not None]
    clear_4xx = [o for o in http_cases if o["status"] and 400 <= o["status"] < 500 and o["problem_json"]]
    clear_4xx = [o for o in clear_4xx if o["detail"]]
    record_figures(
        "bad_input",
        {
            "cases": len(outcomes),
            "http_cases": len(http_cases),
            "clear_4xx_problem_json": len(clear_4xx),
            "5xx": sum(1 for o in http_cases if o["status"] and o["status"] >= 500),
            "worker_alive": worker.process.alive(),
            "corrupt_stored_asset_job": final[bad].status.value,
            "job_after_catalogue": final[good].status.value,
            "redirect_followed": _Redirector.hits.count("/internal") > 0,
            "outcomes": outcomes,
        },
    )
    wrong = [o for o in http_cases if o not in clear_4xx]
    assert not wrong, wrong
    assert len(outcomes) >= 30
    assert worker.process.alive()
    assert final[bad].status is JobStatus.failed and final[bad].error.status == 422, final[bad].error
    assert final[good].status is JobStatus.succeeded
    assert not delivery.ok and _Redirector.hits.count("/internal") == 0
