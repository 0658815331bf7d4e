"""How a worker runs one job against real job state (redis-server) and storage (a folder).

The engine is stood in for by small functions with `run_job`'s signature, so that every outcome
(success, cancel, bad input, out of memory, a crash, a redelivery) can be forced; the end-to-end
tests run the real engine.
"""

import json
import time
from pathlib import Path

import pytest
import redis
import torch

from api_schemas import JobStatus
from jobstate.records import new_job_id
from jobstate.store import JobStore
from storage.local import LocalStorage
from tests.servers import RedisServer
from webhooks.messages import enqueue_job_webhook
from workers.engine import JobOutputs, Progress
from workers.errors import JobCanceled, JobInputError, JobTooLarge
from workers.job_runner import WorkerDeps, execute

pytestmark = pytest.mark.integration

TENANT = "acme"
REQUEST = {"image": "asset:img1", "generation": {"num_frames": 3, "steps": 4}}


@pytest.fixture
def store(redis_server: RedisServer) -> JobStore:
    redis.Redis.from_url(redis_server.url).flushall()
    return JobStore.from_url(redis_server.url)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "objects", secret="s")
    store.put("assets/acme/img1", b"not really a png", "image/png")
    return store


class Webhooks(list):
    """Queues webhook tasks into a list, through the real message builder."""

    def send_task(self, name, args=None, kwargs=None, **options):
        self.append((name, kwargs, options))

    def __call__(self, record) -> bool:
        return enqueue_job_webhook(self, record, presign=lambda key: f"https://files.test/{key}")


def deps_with(store, storage, run) -> WorkerDeps:
    return WorkerDeps(store=store, storage=storage, registry=None, enqueue_webhook=Webhooks(), run_job=run)


def create(store: JobStore, request=REQUEST) -> str:
    job_id = new_job_id(TENANT)
    store.create(job_id, TENANT, "tiny", request)
    return job_id


def fake_engine(steps: int = 4, calls: list | None = None, cancel_at: int | None = None):
    """Reports `steps` denoising steps, reads the asset, writes the usual outputs."""

    def run(
        job, out_dir: Path, *, registry, images, on_progress, should_cancel, job_id, directions=None, on_preview=None
    ):
        if calls is not None:
            calls.append(job_id)
        images.read(job.image, "image")
        for i in range(steps):
            on_progress(Progress("denoise", i + 1, steps))
            if should_cancel():
                raise JobCanceled()
        files = {}
        for name, file in [("video", "video.mp4"), ("poster", "poster.png"), ("manifest", "manifest.json")]:
            files[name] = out_dir / file
            files[name].write_bytes(f"{name} of {job_id}".encode())
        (out_dir / "clips").mkdir()
        for k in (1, 0):
            files[f"clips/{k}"] = out_dir / "clips" / f"{k}.mp4"
            files[f"clips/{k}"].write_bytes(b"clip %d" % k)
        return JobOutputs(files=files, manifest={}, metrics={"timings": {"total": 0.1}})

    return run


def raising(exc: BaseException):
    def run(job, out_dir, **_):
        raise exc

    return run


def test_success_uploads_outputs_under_deterministic_keys(store, storage):
    job_id = create(store)
    deps = deps_with(store, storage, fake_engine())

    assert execute(job_id, TENANT, deps) is JobStatus.succeeded

    record = store.get(TENANT, job_id)
    assert record.status is JobStatus.succeeded
    assert record.progress.stage == "uploading"
    result = record.result
    assert result.video.key == f"jobs/{TENANT}/{job_id}/video.mp4"
    assert result.video.content_type == "video/mp4"
    assert result.manifest.content_type == "application/json"
    assert [c.key for c in result.clips] == [f"jobs/{TENANT}/{job_id}/clips/{k}.mp4" for k in (0, 1)]
    assert storage.get(result.video.key) == f"video of {job_id}".encode()
    assert result.video.sha256 == storage.info(result.video.key).sha256
    assert result.metrics == {"timings": {"total": 0.1}}


def test_a_finished_job_is_not_run_again(store, storage):
    job_id = create(store)
    calls: list[str] = []
    deps = deps_with(store, storage, fake_engine(calls=calls))
    execute(job_id, TENANT, deps)
    first = store.get(TENANT, job_id)

    assert execute(job_id, TENANT, deps) is JobStatus.succeeded  # redelivered message

    assert calls == [job_id]
    assert store.get(TENANT, job_id).finished_at == first.finished_at


def test_a_job_whose_worker_died_is_run_again_to_the_same_keys(store, storage):
    job_id = create(store)
    store.mark_running(job_id)  # the first worker claimed it and died
    deps = deps_with(store, storage, fake_engine())

    assert execute(job_id, TENANT, deps) is JobStatus.succeeded
    assert store.get(TENANT, job_id).result.video.key == f"jobs/{TENANT}/{job_id}/video.mp4"


def test_cancel_stops_the_job_within_a_step(store, storage):
    job_id = create(store)
    seen: list[int] = []

    def run(job, out_dir, *, on_progress, should_cancel, **_):
        for i in range(100):
            on_progress(Progress("denoise", i + 1, 100))
            seen.append(i + 1)
            if i == 2:
                store.request_cancel(job_id)
            if should_cancel():
                raise JobCanceled()
        raise AssertionError("not canceled")

    deps = deps_with(store, storage, run)
    assert execute(job_id, TENANT, deps) is JobStatus.canceled
    assert seen == [1, 2, 3]
    assert deps.enqueue_webhook == []  # no webhook asked for


def test_bad_input_fails_with_the_field(store, storage):
    job_id = create(store)
    deps = deps_with(store, storage, raising(JobInputError("keyframes[1].image", "unknown asset 'x'")))

    assert execute(job_id, TENANT, deps) is JobStatus.failed

    error = store.get(TENANT, job_id).error
    assert error.status == 422
    assert error.field == "keyframes[1].image"
    assert "unknown asset" in error.detail


def test_unknown_asset_is_an_input_error(store, storage):
    job_id = create(store, {"image": "asset:nope", "generation": {"steps": 2}})
    assert execute(job_id, TENANT, deps_with(store, storage, fake_engine())) is JobStatus.failed
    error = store.get(TENANT, job_id).error
    assert (error.status, error.field) == (422, "image")


def test_out_of_memory_fails_the_job_and_the_worker_goes_on(store, storage):
    oom = create(store)
    deps = deps_with(store, storage, raising(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")))

    assert execute(oom, TENANT, deps) is JobStatus.failed
    error = store.get(TENANT, oom).error
    assert error.type.endswith("/out-of-memory")
    assert "out of accelerator memory" in error.detail
    assert "Tried to allocate 2 GiB" in error.detail
    assert "sweep.batch_size" not in error.detail

    sweep = create(store, {**REQUEST, "sweep": {"target": "seed", "to": 9, "count": 4}})
    assert execute(sweep, TENANT, deps) is JobStatus.failed
    assert "a smaller `sweep.batch_size`" in store.get(TENANT, sweep).error.detail

    nxt = create(store)
    deps.run_job = fake_engine()
    assert execute(nxt, TENANT, deps) is JobStatus.succeeded


def test_a_job_too_large_for_the_host_fails_with_what_to_lower(store, storage):
    job_id = create(store)
    too_large = JobTooLarge("generation", "25 frames of 1024x576 need about 9.9 GiB of host memory ...; lower ...")
    deps = deps_with(store, storage, raising(too_large))

    assert execute(job_id, TENANT, deps) is JobStatus.failed
    error = store.get(TENANT, job_id).error
    assert error.type.endswith("/out-of-memory") and error.title == "Not enough host memory"
    assert (error.status, error.field) == (507, "generation")
    assert error.detail.startswith("25 frames of 1024x576 need about 9.9 GiB")


def test_a_job_past_its_time_limit_fails_and_the_worker_goes_on(store, storage):
    def slow(job, out_dir, *, on_progress, should_cancel, **_):
        for i in range(1000):
            time.sleep(0.05)
            on_progress(Progress("denoise", i + 1, 1000))
            should_cancel()
        raise AssertionError("the time limit did not stop the job")

    job_id = create(store)
    deps = deps_with(store, storage, slow)
    deps.job_time_limit_s = 0.5
    started = time.monotonic()

    assert execute(job_id, TENANT, deps) is JobStatus.failed
    assert time.monotonic() - started < 10
    record = store.get(TENANT, job_id)
    error = record.error
    assert error.type.endswith("/time-limit") and error.status == 504
    assert "past this worker's time limit of 0.5 s" in error.detail
    assert 0 < record.progress.step < 1000  # stopped at a step, not run to the end

    # The limit counts from each job's start: the next job on this worker runs as usual.
    nxt = create(store)
    deps.run_job = fake_engine()
    assert execute(nxt, TENANT, deps) is JobStatus.succeeded


def test_the_engine_stops_a_job_at_its_time_limit(store, storage, registry):
    job_id = create(store)
    deps = WorkerDeps(store=store, storage=storage, registry=registry, job_time_limit_s=0.0)

    assert execute(job_id, TENANT, deps) is JobStatus.failed
    error = store.get(TENANT, job_id).error
    assert error.type.endswith("/time-limit"), error.detail


def test_any_other_exception_becomes_a_problem(store, storage):
    job_id = create(store)
    deps = deps_with(store, storage, raising(RuntimeError("boom")))
    assert execute(job_id, TENANT, deps) is JobStatus.failed
    error = store.get(TENANT, job_id).error
    assert (error.status, error.detail) == (500, "RuntimeError: boom")


def test_webhook_is_queued_for_subscribed_events_only(store, storage):
    hooked = {**REQUEST, "webhook": {"url": "http://127.0.0.1:1/hook", "events": ["completed"]}}
    ok, bad = create(store, hooked), create(store, hooked)
    deps = deps_with(store, storage, fake_engine())
    execute(ok, TENANT, deps)
    deps.run_job = raising(RuntimeError("boom"))
    execute(bad, TENANT, deps)

    [(name, kwargs, options)] = deps.enqueue_webhook
    assert (name, options) == ("vsteer.deliver_webhook.v1", {"queue": "webhooks"})
    assert kwargs["msg_id"] == f"msg_{ok}_succeeded"
    assert kwargs["tenant"] == TENANT
    body = json.loads(kwargs["body"])
    assert body["type"] == "job.succeeded"
    assert body["data"]["result"]["video"]["url"] == f"https://files.test/jobs/{TENANT}/{ok}/video.mp4"


def test_progress_webhooks_come_at_each_stage_and_quarter_of_the_steps(store, storage):
    hooked = {**REQUEST, "webhook": {"url": "http://127.0.0.1:1/hook", "events": ["progress", "completed"]}}
    job_id = create(store, hooked)
    deps = deps_with(store, storage, fake_engine(steps=10))
    assert execute(job_id, TENANT, deps) is JobStatus.succeeded

    bodies = [json.loads(kwargs["body"]) for _, kwargs, _ in deps.enqueue_webhook]
    assert [b["type"] for b in bodies] == ["job.progress"] * 5 + ["job.succeeded"]
    # Steps 1..10 of 10: the first report starts the stage, then 3/10, 5/10, 8/10 and 10/10 each pass
    # a quarter of the steps; the other reports send nothing.
    steps = [(b["data"]["progress"]["stage"], b["data"]["progress"]["step"]) for b in bodies[:5]]
    assert steps == [("denoise", 1), ("denoise", 3), ("denoise", 5), ("denoise", 8), ("denoise", 10)]
    assert all(b["data"]["status"] == "running" for b in bodies[:5])
    ids = [kwargs["msg_id"] for _, kwargs, _ in deps.enqueue_webhook]
    assert ids[:2] == [f"msg_{job_id}_progress_denoise_1", f"msg_{job_id}_progress_denoise_3"]
    assert len(set(ids)) == len(ids)


def test_started_webhook_once_per_run_when_asked(store, storage):
    hooked = {**REQUEST, "webhook": {"url": "http://127.0.0.1:1/hook", "events": ["started", "succeeded"]}}
    job_id, quiet = create(store, hooked), create(store)
    deps = deps_with(store, storage, fake_engine())
    assert execute(job_id, TENANT, deps) is JobStatus.succeeded
    assert execute(quiet, TENANT, deps) is JobStatus.succeeded  # asked for no webhook: sends none

    bodies = [json.loads(kwargs["body"]) for _, kwargs, _ in deps.enqueue_webhook]
    assert [b["type"] for b in bodies] == ["job.started", "job.succeeded"]
    started = bodies[0]["data"]
    assert started["status"] == "running" and started["progress"] is None and started["started_at"]
    ids = [kwargs["msg_id"] for _, kwargs, _ in deps.enqueue_webhook]
    assert ids == [f"msg_{job_id}_started_1", f"msg_{job_id}_succeeded"]


def test_unknown_or_foreign_jobs_are_dropped(store, storage):
    job_id = create(store)
    deps = deps_with(store, storage, fake_engine())
    assert execute(new_job_id(TENANT), TENANT, deps) is None
    assert execute(job_id, "someone-else", deps) is None
    assert store.get(TENANT, job_id).status is JobStatus.queued
