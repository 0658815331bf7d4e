"""The same behaviour from every backend: put, get, exists, info, delete, presigned GET."""

import hashlib
import io
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from storage.base import ObjectNotFound, Storage
from storage.local import LocalStorage, verify_file_token


def local_files_app(store: LocalStorage):
    """What the API's /v1/files route does, as a WSGI app: verify the token, serve the file."""

    def app(environ, start_response):
        key = unquote(environ["PATH_INFO"].removeprefix("/v1/files/"))
        query = parse_qs(environ.get("QUERY_STRING", ""))
        expires, sig = query.get("expires", [""])[0], query.get("sig", [""])[0]
        if not verify_file_token(key, expires, sig, store.secret):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden"]
        info = store.info(key)
        if info is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"missing"]
        start_response("200 OK", [("Content-Type", info.content_type or "application/octet-stream")])
        return [store.path_for(key).read_bytes()]

    return app


def fetch(store: Storage, url: str) -> httpx.Response:
    if isinstance(store, LocalStorage):
        with httpx.Client(transport=httpx.WSGITransport(app=local_files_app(store))) as client:
            return client.get(url)
    return httpx.get(url)


def test_put_get_exists_info_delete(storage: Storage):
    data = b"\x00\x01video bytes" * 100
    key = "jobs/acme/job_1/video.mp4"

    assert not storage.exists(key)
    assert storage.info(key) is None
    info = storage.put(key, data, "video/mp4")

    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.exists(key)
    assert storage.get(key) == data
    assert storage.info(key) == info

    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # deleting a missing object is fine


def test_put_accepts_paths_and_file_objects(storage: Storage, tmp_path: Path):
    source = tmp_path / "manifest.json"
    source.write_bytes(b'{"a": 1}')
    from_path = storage.put("jobs/acme/job_2/manifest.json", source, "application/json")
    from_file = storage.put("jobs/acme/job_2/copy.json", io.BytesIO(b'{"a": 1}'), "application/json")

    assert from_path.sha256 == from_file.sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert storage.get("jobs/acme/job_2/copy.json") == b'{"a": 1}'
    assert storage.info("jobs/acme/job_2/manifest.json").content_type == "application/json"


def test_overwrite_replaces_content_and_metadata(storage: Storage):
    key = "assets/acme/img_1"
    storage.put(key, b"first", "image/png")
    info = storage.put(key, b"second version", "image/webp")
    assert storage.get(key) == b"second version"
    assert storage.info(key) == info


def test_missing_object_raises_not_found(storage: Storage):
    with pytest.raises(ObjectNotFound) as caught:
        storage.get("jobs/acme/nope/video.mp4")
    assert caught.value.key == "jobs/acme/nope/video.mp4"


@pytest.mark.parametrize("key", ["../etc/passwd", "jobs/../../x", "/abs", "jobs//x", "jobs/.meta/x", ""])
def test_unsafe_keys_are_rejected(storage: Storage, key: str):
    with pytest.raises(ValueError):
        storage.put(key, b"x", "text/plain")


def test_presigned_get_serves_the_object(storage: Storage):
    data = b"poster" * 1000
    storage.put("jobs/acme/job_3/poster.png", data, "image/png")
    url = storage.presigned_url("jobs/acme/job_3/poster.png", expires_s=120)

    response = fetch(storage, url)

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize("expires_s", [0, -5, 7 * 24 * 3600 + 1, 1.5, True])
def test_presigned_expiry_out_of_range_raises(storage: Storage, expires_s):
    with pytest.raises(ValueError, match="expires_s"):
        storage.presigned_url("jobs/acme/job_3/poster.png", expires_s=expires_s)


def test_ping(storage: Storage):
    storage.ping()


def test_query_of_presigned_url_carries_the_expiry(storage: Storage):
    url = storage.presigned_url("jobs/acme/job_4/video.mp4", expires_s=300)
    query = parse_qs(urlsplit(url).query)
    if isinstance(storage, LocalStorage):
        import time

        assert abs(int(query["expires"][0]) - (time.time() + 300)) < 5
    else:
        assert query["X-Amz-Expires"] == ["300"]
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
