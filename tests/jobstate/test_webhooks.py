"""Standard Webhooks signing, the SSRF guard, backoff, and delivery through a real Celery worker."""

import ipaddress
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from jobstate.config import DEV_WEBHOOK_SECRET, JobStateSettings
from jobstate.records import StoredArtifact, StoredResult, new_job_id
from jobstate.store import JobStore
from jobstate.webhooks import (
    UnsafeURL,
    backoff_delay,
    deliver,
    enqueue_job_webhook,
    is_public_address,
    job_webhook_message,
    progress_worth_sending,
    resolve_target,
    sign,
    verify,
)
from tests.servers import WebhookReceiver, start_celery_worker, start_webhook_receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_the_standard_webhooks_example() -> None:
    body = '{"test": 2432232314}'
    signature = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, signature, now=1614265330)


def test_verify_rejects_tampering_other_secret_and_stale_timestamps() -> None:
    now = int(time.time())
    sig = sign(SECRET, "msg_1", now, b"{}")
    assert verify(SECRET, "msg_1", now, b"{}", f"v1,bogus {sig}")
    assert not verify(SECRET, "msg_1", now, b'{"x":1}', sig)
    assert not verify(SECRET, "msg_2", now, b"{}", sig)
    assert not verify(DEV_WEBHOOK_SECRET, "msg_1", now, b"{}", sig)
    assert not verify(SECRET, "msg_1", now - 600, b"{}", sign(SECRET, "msg_1", now - 600, b"{}"))
    assert not verify(SECRET, "msg_1", "not-a-number", b"{}", sig)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
     "2002:7f00:1::1", "ff02::1", "::"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeURL):
        resolve_target(f"http://{host}/hook")


def test_public_addresses_and_allow_private() -> None:
    assert is_public_address(ipaddress.ip_address("93.184.216.34"))
    assert is_public_address(ipaddress.ip_address("2606:4700::1111"))
    assert resolve_target("https://93.184.216.34/x") == [ipaddress.ip_address("93.184.216.34")]
    assert resolve_target("http://127.0.0.1:9/x", allow_private=True) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(UnsafeURL):
        resolve_target("http://localhost/x")
    with pytest.raises(UnsafeURL):
        resolve_target("ftp://93.184.216.34/x")
    assert deliver("http://127.0.0.1:9/x", "{}", SECRET, "msg_1").permanent


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(0)
    for attempt in range(1, 12):
        ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = start_webhook_receiver(failures=2)
    try:
        yield r
    finally:
        r.stop()


def test_message_is_built_only_for_requested_terminal_events(store: JobStore) -> None:
    job_id = new_job_id()
    request = {"image": "asset:a", "webhook": {"url": "https://example.com/h", "events": ["failed"]}}
    store.create(job_id, "t1", "svd-xt", request)
    store.mark_running(job_id)
    record = store.succeed(job_id, StoredResult()).record
    assert record is not None and job_webhook_message(record, str) is None


@pytest.mark.integration
def test_worker_retries_a_failing_receiver_with_the_same_webhook_id(
    tmp_path: Path, redis_url: str, store: JobStore, receiver: WebhookReceiver
) -> None:
    env = {
        "VSTEER_REDIS_URL": redis_url,
        "VSTEER_WEBHOOK_SECRET": SECRET,
        "VSTEER_WEBHOOK_ALLOW_PRIVATE": "true",
        "VSTEER_WEBHOOK_BACKOFF_BASE_S": "0.2",
        "VSTEER_WEBHOOK_MAX_ATTEMPTS": "5",
    }
    worker = start_celery_worker("jobstate.webhook_tasks", ["webhooks"], tmp_path / "worker.log", env=env)
    try:
        # As the GPU worker will do: finish the job, then enqueue its webhook by task name.
        job_id = new_job_id()
        store.create(job_id, "t1", "svd-xt", {"image": "asset:a", "webhook": {"url": receiver.url}})
        store.mark_running(job_id)
        key = f"jobs/t1/{job_id}/video.mp4"
        record = store.succeed(job_id, StoredResult(video=StoredArtifact(key=key, content_type="video/mp4", bytes=3)))
        producer = Celery(broker=redis_url)
        assert record.record is not None
        assert enqueue_job_webhook(producer, record.record, lambda k: f"https://files.example/{k}")
        assert receiver.delivered.wait(30), (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        worker.stop()

    assert len(receiver.requests) == 3
    ids = {headers["webhook-id"] for headers, _, _ in receiver.requests}
    assert ids == {f"msg_{job_id}_succeeded"}
    for headers, body, _ in receiver.requests:
        assert verify(SECRET, headers["webhook-id"], headers["webhook-timestamp"], body, headers["webhook-signature"])
    gaps = [b[2] - a[2] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # backoff 0.2 s then 0.4 s, half of it fixed
    payload = json.loads(receiver.requests[-1][1])
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job_id and payload["data"]["status"] == "succeeded"
    assert payload["data"]["result"]["video"]["url"] == f"https://files.example/{key}"


def test_settings_refuse_dev_secret_in_production() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        JobStateSettings(environment="production")
    with pytest.raises(ValueError, match="whsec_"):
        JobStateSettings(webhook_secret="plain")
    assert JobStateSettings(environment="production", webhook_secret=SECRET).webhook_secret_for("t") == SECRET


def test_progress_is_sent_when_a_stage_starts_and_at_each_quarter_of_the_steps() -> None:
    reports = [("load", 0, 1), ("encode", 0, 1), *[("denoise", i, 25) for i in range(26)], ("decode", 0, 1)]
    reports += [("video", 0, 1), ("video", 1, 1)]
    sent, last = [], None
    for stage, step, total in reports:
        marker = progress_worth_sending(stage, step, total, last)
        if marker is not None:
            sent.append((stage, step))
            last = marker
    denoise = [("denoise", s) for s in (0, 7, 13, 19, 25)]
    assert sent == [("load", 0), ("encode", 0), *denoise, ("decode", 0), ("video", 0)]  # 9 at most


def test_progress_messages_only_for_jobs_that_asked(store: JobStore) -> None:
    import dataclasses

    from api_schemas import Progress

    job_id = new_job_id()
    for events, expected in [(["progress"], True), (["completed"], False)]:
        store.create(
            job_id + str(expected),
            "t1",
            "svd-xt",
            {"image": "a", "webhook": {"url": "https://e.com/h", "events": events}},
        )
        record = store.mark_running(job_id + str(expected)).record
        assert record is not None and job_webhook_message(record, str) is None  # no progress yet
        at = dataclasses.replace(record, progress=Progress(stage="denoise", step=3, total=10, fraction=0.3))
        message = job_webhook_message(at, str)
        assert (message is not None) is expected
        if message is not None:
            assert message.msg_id == f"msg_{job_id}True_progress_denoise_3"
            body = json.loads(message.body)
            assert body["type"] == "job.progress" and body["data"]["progress"]["step"] == 3
