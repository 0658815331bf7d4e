"""S3 specifics against a real S3 HTTP endpoint: multipart uploads and the public presign endpoint."""

import hashlib
import os
from urllib.parse import urlsplit

import httpx
import pytest

from storage.base import StorageError
from storage.factory import make_storage
from storage.s3 import MULTIPART_THRESHOLD, S3Storage


def test_large_upload_goes_multipart(s3_storage: S3Storage, tmp_path):
    data = os.urandom(MULTIPART_THRESHOLD + 1024 * 1024)
    source = tmp_path / "frames.npy"
    source.write_bytes(data)

    info = s3_storage.put("jobs/acme/j1/frames.npy", source, "application/octet-stream")

    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key="jobs/acme/j1/frames.npy")
    # A multipart ETag is "<md5 of the part md5s>-<part count>".
    assert head["ETag"].strip('"').endswith("-2")
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_storage.info("jobs/acme/j1/frames.npy") == info
    assert s3_storage.get("jobs/acme/j1/frames.npy") == data


def test_small_upload_is_a_single_put(s3_storage: S3Storage):
    s3_storage.put("jobs/acme/j1/poster.png", b"png", "image/png")
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key="jobs/acme/j1/poster.png")
    assert "-" not in head["ETag"]
    assert head["ContentType"] == "image/png"


def test_large_presigned_download(s3_storage: S3Storage):
    data = os.urandom(MULTIPART_THRESHOLD + 17)
    s3_storage.put("jobs/acme/j2/video.mp4", data, "video/mp4")
    response = httpx.get(s3_storage.presigned_url("jobs/acme/j2/video.mp4", 60))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp4"


def test_presigned_urls_name_the_public_endpoint(moto_endpoint: str):
    store = make_storage(
        "s3",
        bucket="public-test",
        endpoint_url=moto_endpoint,
        public_endpoint_url="https://media.example.com",
        access_key_id="testing",
        secret_access_key="testing",
    )
    url = urlsplit(store.presigned_url("jobs/acme/j1/video.mp4", 60))
    assert (url.scheme, url.netloc) == ("https", "media.example.com")
    # Path-style: the bucket is the first path segment, not a subdomain.
    assert url.path == "/public-test/jobs/acme/j1/video.mp4"


def test_client_uses_path_style_sigv4_and_standard_retries(s3_storage: S3Storage):
    config = s3_storage.client.meta.config
    assert config.s3["addressing_style"] == "path"
    assert config.signature_version == "s3v4"
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_unreachable_server_raises_storage_error():
    store = S3Storage(
        "b",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="x",
        secret_access_key="y",
        max_attempts=1,
        connect_timeout_s=0.5,
    )
    with pytest.raises(StorageError, match="not reachable"):
        store.ping()
    with pytest.raises(StorageError):
        store.put("jobs/acme/j1/video.mp4", b"x", "video/mp4")


def test_missing_bucket_fails_ping(moto_endpoint: str):
    store = S3Storage("never-created", endpoint_url=moto_endpoint, access_key_id="x", secret_access_key="y")
    with pytest.raises(StorageError):
        store.ping()


def test_ensure_bucket_command_creates_the_bucket_once(moto_endpoint: str, monkeypatch):
    from storage.__main__ import main

    monkeypatch.setenv("VSTEER_STORAGE_S3_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("VSTEER_STORAGE_S3_SECRET_ACCESS_KEY", "testing")
    argv = ["ensure-bucket", "--bucket", "made-by-command", "--endpoint-url", moto_endpoint, "--wait", "5"]
    assert main(argv) == 0
    assert main(argv) == 0  # already there: still fine
    S3Storage("made-by-command", endpoint_url=moto_endpoint, access_key_id="t", secret_access_key="t").ping()


def test_ensure_bucket_command_fails_when_the_server_never_answers():
    from storage.__main__ import main

    assert main(["ensure-bucket", "--bucket", "b", "--endpoint-url", "http://127.0.0.1:9", "--wait", "0"]) == 1


def test_an_error_answer_during_upload_is_a_storage_error(s3_storage: S3Storage, tmp_path):
    """boto3's transfer manager wraps a server's error answer in S3UploadFailedError; callers that
    retry on StorageError (the worker's upload budget) must see it as one."""
    missing = S3Storage(
        "no-such-bucket", endpoint_url=s3_storage.endpoint_url, access_key_id="t", secret_access_key="t"
    )
    source = tmp_path / "video.mp4"
    source.write_bytes(b"mp4")
    with pytest.raises(StorageError, match="no-such-bucket"):
        missing.put("jobs/acme/j3/video.mp4", source, "video/mp4")
