"""Delivery through a real Celery worker of the webhook app: retries, backoff, one webhook id."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from jobstate.records import StoredArtifact, StoredResult, new_job_id
from jobstate.store import JobStore
from tests.servers import WebhookReceiver, start_celery_worker, start_webhook_receiver
from webhooks.messages import enqueue_job_webhook
from webhooks.signing import verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = start_webhook_receiver(failures=2)
    try:
        yield r
    finally:
        r.stop()


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
    worker = start_celery_worker("webhooks.celery_app", ["webhooks"], tmp_path / "worker.log", env=env)
    try:
        # As the GPU worker will do: finish the job, then enqueue its webhook by task name.
        job_id = new_job_id("t1")
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
