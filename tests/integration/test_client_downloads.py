"""The client refuses a download whose bytes do not match what the service recorded."""

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from api_schemas import Artifact, JobRequest, JobResource, JobResult, JobStatus
from vsteer.client import Client, DownloadError, artifacts


def finished_job(url: str, content: bytes, sha256: str | None = None) -> JobResource:
    artifact = Artifact(
        url=url, content_type="video/mp4", bytes=len(content), sha256=sha256 or hashlib.sha256(content).hexdigest()
    )
    return JobResource(
        id="job_1",
        status=JobStatus.succeeded,
        created_at=datetime.now(UTC),
        model="tiny",
        request=JobRequest(image="asset:a"),
        result=JobResult(video=artifact, clips=[artifact]),
    )


def serving(content: bytes, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=content)

    return httpx.MockTransport(handler)


def test_download_checks_sha256_and_sends_no_api_key(tmp_path):
    seen: list[httpx.Request] = []
    with Client("http://api.test", "secret-key", transport=serving(b"video", seen)) as client:
        files = client.download(finished_job("https://s3.test/b/video.mp4?X-Amz-Signature=x", b"video"), tmp_path)
    assert files["video"].read_bytes() == b"video"
    assert files["clips/0"] == tmp_path / "clips" / "0.mp4"
    # A presigned URL carries its own signature; an Authorization header would be refused by S3.
    assert all("authorization" not in r.headers for r in seen)


def test_relative_urls_resolve_against_the_api(tmp_path):
    seen: list[httpx.Request] = []
    with Client("http://api.test/", "k", transport=serving(b"v", seen)) as client:
        client.download(finished_job("/v1/files/jobs/t/j/video.mp4?expires=1&sig=a", b"v"), tmp_path, names=["video"])
    assert str(seen[0].url) == "http://api.test/v1/files/jobs/t/j/video.mp4?expires=1&sig=a"


def test_corrupted_download_is_refused_and_removed(tmp_path):
    job = finished_job("https://s3.test/b/video.mp4", b"video", sha256=hashlib.sha256(b"other").hexdigest())
    with Client("http://api.test", "k", transport=serving(b"video", [])) as client, pytest.raises(DownloadError):
        client.download(job, tmp_path, names=["video"])
    assert list(tmp_path.iterdir()) == []


def test_artifact_file_names():
    names = {name: file for name, (_, file) in artifacts(finished_job("u", b"x")).items()}
    assert names == {"video": "video.mp4", "clips/0": "clips/0.mp4"}


def test_a_job_without_a_result_is_a_download_error(tmp_path):
    from api_schemas import Problem

    failed = finished_job("u", b"x").model_copy(
        update={
            "status": JobStatus.failed,
            "result": None,
            "error": Problem(type="about:blank", title="Job failed", status=500, detail="RuntimeError: boom"),
        }
    )
    expected = "job_1 has no result to download: it is failed: RuntimeError: boom"
    with (
        Client("http://api.test", "k", transport=serving(b"", [])) as client,
        pytest.raises(DownloadError, match=expected),
    ):
        client.download(failed, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_async_client_iterates_every_page():
    import asyncio

    from vsteer.client import AsyncClient

    job = finished_job("u", b"x").model_dump(mode="json", by_alias=True)
    pages = {None: {"items": [job, job], "next_cursor": "c1"}, "c1": {"items": [job], "next_cursor": None}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    async def collect() -> list[str]:
        async with AsyncClient("http://api.test", "k", transport=httpx.MockTransport(handler)) as client:
            return [j.id async for j in client.iter_jobs(page_size=2)]

    assert asyncio.run(collect()) == ["job_1", "job_1", "job_1"]
