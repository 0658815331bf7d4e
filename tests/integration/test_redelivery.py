"""At-least-once delivery end to end: a worker killed in the middle of a job loses nothing, even with
no reaper running (no API here): the broker's visibility timeout is the last resort.

`task_acks_late` + `task_reject_on_worker_lost` leave the message unacknowledged in Redis; after the
visibility timeout the next worker to start takes it again, claims the job (its dead worker's lease has
expired), runs it to the same object keys, and a job that finished is never run a second time.
`tests/reliability/test_worker_kill.py` shows the reaper's faster path.
"""

import time
from pathlib import Path

import pytest
from celery import Celery

from api_schemas import JobStatus
from jobstate.records import new_job_id
from jobstate.store import JobStore
from storage.local import LocalStorage
from tests.conftest import data_uri, make_image
from tests.integration.conftest import start_worker
from tests.servers import start_redis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VISIBILITY_S = 11


def test_a_job_survives_its_worker_being_killed(tmp_path: Path, tiny_model_dir: Path):
    redis = start_redis(tmp_path)
    workers = []
    try:
        env = {
            "VSTEER_REDIS_URL": redis.url,
            "VSTEER_STORAGE_BACKEND": "local",
            "VSTEER_STORAGE_LOCAL_DIR": str(tmp_path / "objects"),
            "VSTEER_CACHE_DIR": str(tiny_model_dir.parent),
            "VSTEER_MODELS": "",
            "VSTEER_DEFAULT_MODEL": "tiny",
            # The shortest timeout the settings accept for a 10 s job with no queue wait.
            "VSTEER_JOB_TIME_LIMIT_S": "10",
            "VSTEER_MAX_QUEUE_WAIT_S": "0",
            "VSTEER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
            # A lease that lapses before the visibility timeout: the redelivered job may be claimed.
            "VSTEER_HEARTBEAT_S": "1",
            "VSTEER_WORKER_LOST_AFTER_S": "3",
        }
        store = JobStore.from_url(redis.url)
        job_id = new_job_id("acme")
        store.create(
            job_id,
            "acme",
            "tiny",
            {
                "model": "tiny",
                "seed": 3,
                "image": data_uri(make_image(5)),
                "generation": {"num_frames": 3, "width": 64, "height": 64, "steps": 40},
                "output": {"preview": "none"},
            },
        )
        first = start_worker("workers.celery_app", ["gpu.tiny"], tmp_path / "worker1.log", env)
        workers.append(first)
        producer = Celery(broker=redis.url, set_as_current=False)
        producer.send_task("vsteer.run_job.v1", kwargs={"job_id": job_id, "tenant": "acme"}, queue="gpu.tiny")

        # 1. the first worker dies in the middle of denoising
        deadline = time.monotonic() + 120
        while (record := store.get("acme", job_id)).progress is None or record.progress.stage != "denoise":
            log = (tmp_path / "worker1.log").read_text()[-3000:]
            assert time.monotonic() < deadline and not record.status.is_terminal(), (record.error, log)
            time.sleep(0.05)
        killed_at = time.monotonic()
        first.process.proc.kill()
        first.process.proc.wait(10)
        assert store.get("acme", job_id).status is JobStatus.running

        # 2. after the visibility timeout, a new worker takes the message again and finishes the job
        time.sleep(max(0.0, VISIBILITY_S + 1 - (time.monotonic() - killed_at)))
        second = start_worker("workers.celery_app", ["gpu.tiny"], tmp_path / "worker2.log", env)
        workers.append(second)
        deadline = time.monotonic() + 180
        while not (record := store.get("acme", job_id)).status.is_terminal():
            assert time.monotonic() < deadline, (tmp_path / "worker2.log").read_text()[-3000:]
            time.sleep(0.1)

        assert record.status is JobStatus.succeeded, record.error
        assert record.attempts == 2
        assert record.result.video.key == f"jobs/acme/{job_id}/video.mp4"
        storage = LocalStorage(tmp_path / "objects", secret="unused")
        assert storage.info(record.result.video.key).sha256 == record.result.video.sha256

        # 3. delivering the message once more does not run the finished job again
        finished_at = record.finished_at
        producer.send_task("vsteer.run_job.v1", kwargs={"job_id": job_id, "tenant": "acme"}, queue="gpu.tiny")
        time.sleep(2)
        again = store.get("acme", job_id)
        assert (again.attempts, again.finished_at) == (2, finished_at)
        assert "already succeeded" in (tmp_path / "worker2.log").read_text()
        producer.close()
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()
