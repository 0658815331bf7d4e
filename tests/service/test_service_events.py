"""Server-sent events through a real uvicorn: current state first, progress ticks, then the final state."""

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from jobstate.records import StoredArtifact, StoredResult, new_job_id
from jobstate.store import JobStore
from service.app import create_app
from service.settings import Settings
from tests.servers import ThreadedUvicorn, serve_in_thread
from tests.service.conftest import AUTH_A, AUTH_B, png


@pytest.fixture
def api(settings: Settings) -> Iterator[ThreadedUvicorn]:
    server = serve_in_thread(create_app(settings))
    try:
        yield server
    finally:
        server.stop()


def read_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event is not None:
            yield event, json.loads(line.removeprefix("data: "))
            event = None


def submit(client: httpx.Client) -> str:
    asset = client.post("/v1/assets", files={"file": ("a.png", png(), "image/png")}, headers=AUTH_A).json()
    job = client.post("/v1/jobs", json={"image": f"asset:{asset['id']}"}, headers=AUTH_A)
    assert job.status_code == 202, job.text
    return str(job.json()["id"])


def wait_subscribed(r: redis.Redis, job_id: str) -> None:
    channel = f"vsteer:job:{job_id}:events"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if dict(r.pubsub_numsub(channel)).get(channel.encode(), 0) > 0:
            return
        time.sleep(0.01)
    raise AssertionError("the event stream never subscribed")


def test_events_deliver_progress_and_the_final_state(api: ThreadedUvicorn, store: JobStore, sync_redis) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        job_id = submit(client)
        store.mark_running(job_id)

        first_event_seen = threading.Event()

        def work() -> None:
            # As a GPU worker: progress every step, then the result, once the stream has shown the
            # current state (a worker faster than that would make the final state the first event).
            wait_subscribed(sync_redis, job_id)
            assert first_event_seen.wait(5)
            for step in range(1, 4):
                store.progress(job_id, "denoising", step, 3)
            video = StoredArtifact(key=f"jobs/tenant-a/{job_id}/video.mp4", content_type="video/mp4", bytes=3)
            store.succeed(job_id, StoredResult(video=video))

        worker = threading.Thread(target=work)
        worker.start()
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH_A) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = []
            for event in read_events(response):
                events.append(event)
                first_event_seen.set()
        worker.join()

    assert events[0][0] == "job" and events[0][1]["status"] == "running"
    assert [e[1]["step"] for e in events if e[0] == "progress"] == [1, 2, 3]
    assert events[-1][0] == "job" and events[-1][1]["status"] == "succeeded"
    assert events[-1][1]["result"]["video"]["url"].startswith(f"http://testserver/v1/files/jobs/tenant-a/{job_id}/")


def test_late_subscriber_sees_the_final_state_and_others_get_404(api: ThreadedUvicorn, store: JobStore) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        job_id = submit(client)
        store.mark_running(job_id)
        store.mark_canceled(job_id)
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH_A) as response:
            events = list(read_events(response))
        assert [(e, d["status"]) for e, d in events] == [("job", "canceled")]
        other = client.get(f"/v1/jobs/{job_id}/events", headers=AUTH_B)
        assert other.status_code == 404 and other.headers["content-type"] == "application/problem+json"
        missing = client.get(f"/v1/jobs/{new_job_id()}/events", headers=AUTH_A)
        assert missing.status_code == 404


def test_quiet_stream_sends_keep_alive_comments(api: ThreadedUvicorn, store: JobStore) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        job_id = submit(client)
        lines = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH_A) as response:
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith(":"):
                    break
        assert lines[0] == "event: job" and lines[-1] == ": keep-alive"
