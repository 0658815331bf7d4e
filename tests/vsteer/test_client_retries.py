"""The client waits out a 429's `Retry-After` (within reason) and then retries; a long one is the caller's."""

import time

import httpx
import pytest

from vsteer.client import Client, VsteerError

PROBLEM = {"type": "https://vsteer.dev/problems/rate-limited", "title": "Too Many Requests", "status": 429}
JOB = {
    "id": "job_0000000000000000000000000001",
    "status": "queued",
    "created_at": "2026-01-01T00:00:00Z",
    "model": "tiny",
    "request": {"image": "asset:ast_1"},
}


def _transport(retry_after: str, limited: int) -> tuple[httpx.MockTransport, list[float]]:
    seen: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        if len(seen) <= limited:
            return httpx.Response(
                429,
                json=PROBLEM,
                headers={"Retry-After": retry_after, "content-type": "application/problem+json"},
            )
        return httpx.Response(200, json=JOB)

    return httpx.MockTransport(handle), seen


def test_a_429_is_retried_after_its_retry_after() -> None:
    transport, seen = _transport("1", limited=1)
    job = Client("http://api.test", "key", transport=transport).get(JOB["id"])
    assert job.id == JOB["id"]
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.95


def test_a_retry_after_too_long_to_wait_is_the_callers() -> None:
    transport, seen = _transport("3600", limited=5)
    with pytest.raises(VsteerError) as raised:
        Client("http://api.test", "key", transport=transport).get(JOB["id"])
    assert raised.value.status == 429 and len(seen) == 1
