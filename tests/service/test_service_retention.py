"""Retention through the API: a job submitted now carries the deployment's retention, and the reaper
sweeps local-storage results past it at most once an hour."""

import os
import time
from pathlib import Path

import httpx
import pytest
import redis

from jobstate.redis_keys import job_record_key
from jobstate.store import AsyncJobStore
from service.reaper import SWEEP_EVERY_S, Reaper
from storage.local import LocalStorage
from tests.service.conftest import AUTH_A, make_settings, upload_image

pytestmark = pytest.mark.anyio


async def test_a_submitted_job_carries_the_retention(client: httpx.AsyncClient, sync_redis: redis.Redis) -> None:
    asset = await upload_image(client)
    job = (await client.post("/v1/jobs", json={"image": f"asset:{asset}"}, headers=AUTH_A)).json()
    assert sync_redis.hget(job_record_key(job["id"]), "retain_s") == str(30 * 86400).encode()  # the default


async def test_the_reaper_sweeps_old_local_results_once_an_hour(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, redis_url, retention_days=2)
    storage = LocalStorage(tmp_path / "objects", secret="s")
    reaper = Reaper(AsyncJobStore.from_url(redis_url), None, lambda key: key, settings, storage)  # type: ignore[arg-type]

    def old_result(name: str) -> str:
        key = f"jobs/tenant-a/{name}/video.mp4"
        storage.put(key, b"v", "video/mp4")
        then = time.time() - 3 * 86400
        os.utime(storage.path_for(key), (then, then))
        return key

    first = old_result("job_a")
    await reaper.sweep(now=1000.0)
    assert not storage.exists(first)
    second = old_result("job_b")
    await reaper.sweep(now=1000.0 + SWEEP_EVERY_S - 1)  # within the hour: not again
    assert storage.exists(second)
    await reaper.sweep(now=1000.0 + SWEEP_EVERY_S)
    assert not storage.exists(second)
