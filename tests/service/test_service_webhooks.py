"""Webhooks end to end: the API accepts a receiver (private addresses allowed by configuration), a job
ends, and a real webhook worker delivers a message whose signature verifies."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.app import create_app
from tests.servers import WebhookReceiver, start_celery_worker, start_webhook_receiver
from tests.service.conftest import AUTH_A, make_settings, open_client, upload_image
from webhooks.signing import verify

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SECRET = "whsec_" + "dGVuYW50LWEtd2ViaG9vay1zZWNyZXQta2V5"  # base64 of "tenant-a-webhook-secret-key"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = start_webhook_receiver(failures=1)
    try:
        yield r
    finally:
        r.stop()


async def test_canceled_job_webhook_is_delivered_signed(
    tmp_path: Path, redis_url: str, receiver: WebhookReceiver
) -> None:
    env = {
        "VSTEER_REDIS_URL": redis_url,
        "VSTEER_WEBHOOK_SECRETS": json.dumps({"tenant-a": SECRET}),
        "VSTEER_WEBHOOK_ALLOW_PRIVATE": "true",
        "VSTEER_WEBHOOK_BACKOFF_BASE_S": "0.1",
    }
    settings = make_settings(tmp_path, redis_url, webhook_allow_private=True, webhook_secrets={"tenant-a": SECRET})
    worker = start_celery_worker("webhooks.celery_app", ["webhooks"], tmp_path / "webhooks.log", env=env)
    try:
        async for client in open_client(create_app(settings)):
            asset = await upload_image(client)
            doc = {"image": f"asset:{asset}", "webhook": {"url": receiver.url, "events": ["canceled"]}}
            job = (await client.post("/v1/jobs", json=doc, headers=AUTH_A)).json()
            canceled = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH_A)
            assert canceled.status_code == 200
        assert receiver.delivered.wait(20), (tmp_path / "webhooks.log").read_text()[-2000:]
    finally:
        worker.stop()

    assert len(receiver.requests) == 2  # one failure, then the retry
    assert {h["webhook-id"] for h, _, _ in receiver.requests} == {f"msg_{job['id']}_canceled"}
    headers, body, _ = receiver.requests[-1]
    assert verify(SECRET, headers["webhook-id"], headers["webhook-timestamp"], body, headers["webhook-signature"])
    payload = json.loads(body)
    assert payload["type"] == "job.canceled" and payload["data"]["id"] == job["id"]
