"""Server-sent events through a real uvicorn: current state first, progress ticks, then the final state."""

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from jobstate.records import StoredArtifact, StoredResult, new_job_id
from jobstate.redis_keys import events_channel
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
    channel = events_channel(job_id)
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
                store.progress(job_id, "denoise", step, 3)
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
    # the whole job's percent: denoising spans 5 to 85
    assert [e[1]["percent"] for e in events if e[0] == "progress"] == [31.67, 58.33, 85.0]
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
        missing = client.get(f"/v1/jobs/{new_job_id('tenant-a')}/events", headers=AUTH_A)
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
        assert lines[0].startswith("id: queued.") and lines[1] == "event: job" and lines[-1] == ": keep-alive"


def first_event_id(client: httpx.Client, job_id: str, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """(the first event's id, the first non-id line after it) of a fresh stream."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**AUTH_A, **(headers or {})}) as response:
        lines = response.iter_lines()
        first = next(lines)
        return first, next(lines)


def test_a_resumed_stream_leaves_out_the_state_the_client_holds(
    api: ThreadedUvicorn, store: JobStore, sync_redis
) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        job_id = submit(client)
        store.mark_running(job_id)
        store.progress(job_id, "denoising", 2, 5)
        first, after = first_event_id(client, job_id)
        assert first == "id: running.1.denoising.2" and after == "event: job"

        # Resumed from that id: nothing to repeat, so the stream waits (a keep-alive) for news.
        resumed, _ = first_event_id(client, job_id, {"Last-Event-ID": "running.1.denoising.2"})
        assert resumed == ": keep-alive"
        # Resumed from an older id: the current state first, so nothing in between is lost.
        stale, after = first_event_id(client, job_id, {"Last-Event-ID": "running.1.denoising.1"})
        assert stale == "id: running.1.denoising.2" and after == "event: job"

        # News after a resume arrives with its own id.
        def work() -> None:
            wait_subscribed(sync_redis, job_id)
            store.progress(job_id, "denoising", 3, 5)

        worker = threading.Thread(target=work)
        worker.start()
        headers = {**AUTH_A, "Last-Event-ID": "running.1.denoising.2"}
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
            lines = []
            for line in response.iter_lines():
                if line and not line.startswith(":"):
                    lines.append(line)
                if len(lines) == 2:
                    break
        worker.join()
        # (the step can land between the stream's subscribing and its reading the record: then it comes
        # as the record, with the same id)
        assert lines[0] == "id: running.1.denoising.3" and lines[1] in ("event: progress", "event: job")


class DroppingProxy:
    """A TCP forwarder to the API that cuts the first events stream right after its first event, as a
    flaky network would; it records each events request's `Last-Event-ID`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.resumed_from: list[str | None] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream) -> None:  # type: ignore[no-untyped-def]
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        request = downstream.recv(65536)
        head = request.decode("latin-1")
        events = "/events" in head.split("\r\n", 1)[0]
        if events:
            resume = [
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("last-event-id:")
            ]
            self.resumed_from.append(resume[0] if resume else None)
        cut = events and not self.dropped
        self.dropped = self.dropped or cut
        upstream.sendall(request)
        threading.Thread(target=self._pipe, args=(downstream, upstream), daemon=True).start()
        seen = b""
        try:
            while chunk := upstream.recv(65536):
                downstream.sendall(chunk)
                seen += chunk
                if cut and b"\n\n" in seen.split(b"\r\n\r\n", 1)[-1]:
                    break  # the first event went through: drop the connection mid-stream
        finally:
            for end in (downstream, upstream):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)  # wakes the other direction's thread, sends FIN
                end.close()

    @staticmethod
    def _pipe(source, sink) -> None:  # type: ignore[no-untyped-def]
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_the_client_resumes_a_dropped_stream_and_misses_nothing(api: ThreadedUvicorn, store: JobStore, sync_redis):
    from vsteer.client import Client

    with httpx.Client(base_url=api.url, timeout=10) as client:
        job_id = submit(client)
    store.mark_running(job_id)
    proxy = DroppingProxy(int(api.url.rsplit(":", 1)[1]))

    def work() -> None:
        # As a GPU worker, once the resumed stream listens: three steps, then the result.
        deadline = time.monotonic() + 10
        while len(proxy.resumed_from) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        wait_subscribed(sync_redis, job_id)
        for step in range(1, 4):
            store.progress(job_id, "denoising", step, 3)
        video = StoredArtifact(key=f"jobs/tenant-a/{job_id}/video.mp4", content_type="video/mp4", bytes=3)
        store.succeed(job_id, StoredResult(video=video))

    worker = threading.Thread(target=work)
    worker.start()
    try:
        with Client(proxy.url, "key-tenant-a") as sdk:
            seen = [(job.status.value, job.progress.step if job.progress else None) for job in sdk.events(job_id)]
    finally:
        worker.join()
        proxy.close()

    assert proxy.resumed_from == [None, "running.1.-"]  # the second request resumed from the first event
    assert seen[0] == ("running", None)
    assert [step for status, step in seen if status == "running"][1:] == [1, 2, 3]
    assert seen[-1][0] == "succeeded"


def test_live_previews_arrive_as_events_without_ids_and_the_running_job_shows_the_latest(
    api: ThreadedUvicorn, store: JobStore, sync_redis
) -> None:
    from api_schemas import LivePreview
    from vsteer.client import Client

    with httpx.Client(base_url=api.url, timeout=10) as client:
        job_id = submit(client)
        store.mark_running(job_id)
        shown: list[dict | None] = []
        # The previews are published once the stream has sent the job's state: one published before the
        # stream reads the record is rightly superseded by the record's own (the latest), which would
        # make the two previews below one.
        state_sent = threading.Event()

        def work() -> None:
            wait_subscribed(sync_redis, job_id)
            assert state_sent.wait(10)
            for step in (2, 4):
                store.preview(job_id, LivePreview(step=step, total=4, image=f"data:image/jpeg;base64,AAA{step}"))
                store.progress(job_id, "denoise", step, 4)
            shown.append(httpx.get(f"{api.url}/v1/jobs/{job_id}", headers=AUTH_A, timeout=10).json()["preview"])
            store.succeed(job_id, StoredResult())

        worker = threading.Thread(target=work)
        worker.start()
        lines: list[str] = []
        with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH_A) as response:
            for line in response.iter_lines():
                lines.append(line)
                if line == "" and any(seen.startswith("data:") for seen in lines):
                    state_sent.set()  # the first event (the running state) is complete
        worker.join()
        final = client.get(f"/v1/jobs/{job_id}", headers=AUTH_A).json()

    previews = [
        json.loads(lines[i + 1].removeprefix("data: ")) for i, line in enumerate(lines) if line == "event: preview"
    ]
    assert [(p["step"], p["total"], p["image"]) for p in previews] == [
        (2, 4, "data:image/jpeg;base64,AAA2"),
        (4, 4, "data:image/jpeg;base64,AAA4"),
    ]
    # A preview is not state to resume from: no `id:` line before it.
    for i, line in enumerate(lines):
        if line == "event: preview":
            assert i == 0 or not lines[i - 1].startswith("id:"), lines[i - 1 : i + 2]
    assert shown == [{"step": 4, "total": 4, "image": "data:image/jpeg;base64,AAA4"}]
    assert final["status"] == "succeeded" and final["preview"] is None

    # The typed client folds previews into the job it yields.
    with httpx.Client(base_url=api.url, timeout=10) as client:
        second = submit(client)
    store.mark_running(second)

    def again() -> None:
        wait_subscribed(sync_redis, second)
        store.preview(second, LivePreview(step=1, total=2, image="data:image/jpeg;base64,BBB"))
        store.succeed(second, StoredResult())

    worker = threading.Thread(target=again)
    worker.start()
    with Client(api.url, "key-tenant-a") as sdk:
        seen = [job.preview.image if job.preview else None for job in sdk.events(second)]
    worker.join()
    # the preview shows in a job it yields (already in the first, when the preview landed before the
    # stream read the record), and the finished job shows none
    preview = "data:image/jpeg;base64,BBB"
    assert seen[-1] is None and preview in seen, seen
    assert seen[: seen.index(preview)] in ([], [None]) and seen[seen.index(preview) + 1 : -1] == [], seen
