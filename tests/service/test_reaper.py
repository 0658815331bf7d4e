"""The API's reaper against a real redis-server: it holds off until it has reached Redis for a whole
lease (so live workers renew theirs after an outage), then queues a lost worker's job again, and sends
the webhook of a job it fails as a poison job."""

import time
from pathlib import Path

import pytest
import redis

from api_schemas import JobStatus
from jobstate.records import JobRecord, Presign, new_job_id
from jobstate.redis_keys import lease_key
from jobstate.store import AsyncJobStore, JobStore
from jobstate.task_message import task_message
from service.reaper import Reaper
from tests.service.conftest import make_settings

pytestmark = pytest.mark.anyio

LOST_AFTER_S = 0.6


class Webhooks:
    """Records the jobs whose webhook the reaper queued."""

    def __init__(self) -> None:
        self.sent: list[JobRecord] = []

    async def enqueue_webhook(self, record: JobRecord, presign: Presign) -> bool:
        self.sent.append(record)
        return True


def lost_job(store: JobStore, r: redis.Redis) -> str:
    """A running job whose worker died: its lease is gone."""
    job_id = new_job_id("tenant-a")
    task = task_message("vsteer.run_job.v1", {"job_id": job_id, "tenant": "tenant-a"}, "gpu.svd-xt", task_id=job_id)
    store.create(job_id, "tenant-a", "svd-xt", {"model": "svd-xt"}, task=task)
    r.rpop("gpu.svd-xt")  # taken by the worker
    store.mark_running(job_id, "gpu0@host:1:aa", 0.05)
    while r.exists(lease_key(job_id)):
        time.sleep(0.01)
    return job_id


async def test_the_reaper_waits_a_lease_after_reaching_redis_then_queues_the_job(
    tmp_path: Path, redis_url: str, store: JobStore
):
    r = redis.Redis.from_url(redis_url)
    job_id = lost_job(store, r)
    settings = make_settings(tmp_path, redis_url, heartbeat_s=0.2, worker_lost_after_s=LOST_AFTER_S)
    astore = AsyncJobStore.from_url(redis_url)
    reaper = Reaper(astore, Webhooks(), str, settings)  # type: ignore[arg-type]
    try:
        await reaper.scan()
        assert store.get("tenant-a", job_id).status is JobStatus.running  # just reached Redis
        time.sleep(LOST_AFTER_S)
        await reaper.scan()
        record = store.get("tenant-a", job_id)
        assert record.status is JobStatus.queued and record.attempts == 1
        assert r.llen("gpu.svd-xt") == 1
    finally:
        await astore.redis.aclose()


async def test_a_job_failed_as_a_poison_job_gets_its_webhook(tmp_path: Path, redis_url: str, store: JobStore):
    r = redis.Redis.from_url(redis_url)
    job_id = lost_job(store, r)
    settings = make_settings(tmp_path, redis_url, heartbeat_s=0.2, worker_lost_after_s=LOST_AFTER_S, max_deliveries=1)
    astore = AsyncJobStore.from_url(redis_url)
    webhooks = Webhooks()
    reaper = Reaper(astore, webhooks, str, settings)  # type: ignore[arg-type]
    try:
        await reaper.scan()
        time.sleep(LOST_AFTER_S)
        await reaper.scan()
    finally:
        await astore.redis.aclose()
    record = store.get("tenant-a", job_id)
    assert record.status is JobStatus.failed and record.error.type.endswith("/worker-lost")
    assert [(w.id, w.status) for w in webhooks.sent] == [(job_id, JobStatus.failed)]
    assert r.llen("gpu.svd-xt") == 0
