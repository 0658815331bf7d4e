"""JobStore and AsyncJobStore against a real redis-server."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from api_schemas import JobStatus
from jobstate.errors import IdempotencyConflict
from jobstate.operations import body_hash
from jobstate.records import AssetRecord, StoredArtifact, StoredResult, new_asset_id, new_job_id, to_resource
from jobstate.redis_keys import events_channel
from jobstate.store import AsyncJobStore, JobStore, failure
from tests.jobstate.conftest import watch_while

REQUEST = {"model": "svd-xt", "image": "asset:abc", "seed": 1}


def make_job(store: JobStore, tenant: str = "t1", **kw) -> str:
    job_id = new_job_id(tenant)
    store.create(job_id, tenant, "svd-xt", REQUEST, **kw)
    return job_id


def test_create_and_get_is_tenant_scoped(store: JobStore) -> None:
    job_id = make_job(store, "t1")
    record = store.get("t1", job_id)
    assert record is not None
    assert record.status is JobStatus.queued
    assert record.request == REQUEST
    assert record.started_at is None and record.progress is None
    assert store.get("t2", job_id) is None
    assert store.get("t1", new_job_id("t1")) is None


def test_create_returns_the_record_it_wrote(store: JobStore) -> None:
    job_id = new_job_id("t1")
    created = store.create(job_id, "t1", "svd-xt", REQUEST, idempotency=("k", body_hash(REQUEST)))
    assert created.created
    assert created.record == store.get("t1", job_id)
    replay = store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, idempotency=("k", body_hash(REQUEST)))
    assert replay.record == created.record and not replay.created


def test_lifecycle_running_progress_succeeded(store: JobStore) -> None:
    job_id = make_job(store)
    assert store.mark_running(job_id).applied
    ack = store.progress(job_id, "denoising", 3, 25)
    assert ack.written and not ack.cancel_requested
    record = store.get_any(job_id)
    assert record is not None and record.progress is not None
    assert (record.progress.stage, record.progress.step, record.progress.total) == ("denoising", 3, 25)
    assert record.progress.fraction == pytest.approx(3 / 25)
    result = StoredResult(
        video=StoredArtifact(key=f"jobs/t1/{job_id}/video.mp4", content_type="video/mp4", bytes=10, sha256="ab"),
        metrics={"seconds": 1.5},
    )
    t = store.succeed(job_id, result)
    assert t.applied and t.record is not None
    assert t.record.status is JobStatus.succeeded and t.record.finished_at is not None
    assert t.record.result == result
    resource = to_resource(t.record, lambda key: f"https://files/{key}")
    assert resource.result is not None and resource.result.video is not None
    assert resource.result.video.url == f"https://files/jobs/t1/{job_id}/video.mp4"


def test_terminal_job_never_changes(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    assert store.fail(job_id, failure("Out of memory", "CUDA OOM")).applied
    for t in (
        store.mark_running(job_id),
        store.succeed(job_id, StoredResult()),
        store.mark_canceled(job_id),
        store.fail(job_id, failure("again", "again")),
    ):
        assert not t.applied
        assert t.record is not None and t.record.status is JobStatus.failed
    assert not store.progress(job_id, "denoising", 1, 2).written
    record = store.get_any(job_id)
    assert record is not None and record.error is not None and record.error.title == "Out of memory"


def test_redelivery_may_mark_running_again(store: JobStore) -> None:
    job_id = make_job(store)
    assert store.mark_running(job_id).applied
    t = store.mark_running(job_id)
    assert t.applied and t.record is not None and t.record.attempts == 2


def test_concurrent_finishers_only_one_wins(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda i: (store.succeed(job_id, StoredResult()) if i % 2 else store.mark_canceled(job_id)).applied,
                range(16),
            )
        )
    assert outcomes.count(True) == 1


def test_cancel_queued_is_immediate_running_is_a_flag(store: JobStore) -> None:
    queued = make_job(store)
    outcome, record = store.request_cancel(queued)
    assert outcome == "canceled" and record is not None and record.status is JobStatus.canceled

    running = make_job(store)
    store.mark_running(running)
    assert not store.is_cancel_requested(running)
    outcome, record = store.request_cancel(running)
    assert outcome == "requested" and record is not None and record.status is JobStatus.running
    assert store.is_cancel_requested(running)
    assert store.progress(running, "denoising", 1, 2).cancel_requested
    assert store.mark_canceled(running).applied
    assert store.request_cancel(running)[0] == "terminal"
    assert store.request_cancel(new_job_id("t1"))[0] == "missing"


def test_idempotency_same_body_same_job_other_body_conflict(store: JobStore) -> None:
    h = body_hash(REQUEST)
    first = store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, idempotency=("key-1", h))
    again = store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, idempotency=("key-1", h))
    assert first.created and not again.created
    assert again.record.id == first.record.id
    with pytest.raises(IdempotencyConflict):
        store.create(
            new_job_id("t1"), "t1", "svd-xt", {**REQUEST, "seed": 2}, idempotency=("key-1", body_hash({"x": 1}))
        )
    # Keys are per tenant.
    other = store.create(new_job_id("t2"), "t2", "svd-xt", REQUEST, idempotency=("key-1", h))
    assert other.created and other.record.id != first.record.id


def test_idempotency_race_creates_one_job(store: JobStore) -> None:
    h = body_hash(REQUEST)
    barrier = threading.Barrier(8)

    def submit(_: int) -> str:
        barrier.wait()
        return store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, idempotency=("race", h)).record.id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(submit, range(8)))
    assert len(ids) == 1


def test_list_newest_first_cursor_stable_under_inserts_and_status_filter(store: JobStore) -> None:
    ids = []
    for i in range(7):
        ids.append(new_job_id("t1", now=1_700_000_000 + i))
        store.create(ids[-1], "t1", "svd-xt", REQUEST)
    store.create(new_job_id("t2"), "t2", "svd-xt", REQUEST)
    page = store.list_jobs("t1", limit=3)
    assert [r.id for r in page.records] == ids[::-1][:3]
    assert page.next_cursor is not None
    make_job(store, "t1")  # a newer job arrives between pages
    page2 = store.list_jobs("t1", cursor=page.next_cursor, limit=3)
    assert [r.id for r in page2.records] == ids[::-1][3:6]
    page3 = store.list_jobs("t1", cursor=page2.next_cursor, limit=3)
    assert [r.id for r in page3.records] == ids[:1] and page3.next_cursor is None

    store.mark_running(ids[2])
    store.succeed(ids[2], StoredResult())
    succeeded = store.list_jobs("t1", status=JobStatus.succeeded)
    assert [r.id for r in succeeded.records] == [ids[2]]
    assert ids[2] not in [r.id for r in store.list_jobs("t1", status=JobStatus.queued, limit=100).records]


def test_assets_are_per_tenant(store: JobStore) -> None:
    asset = AssetRecord(
        id=new_asset_id(), tenant="t1", key="assets/t1/x", kind="image", content_type="image/png",
        sha256="00", bytes=3, width=2, height=2, created_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    store.put_asset(asset)
    assert store.get_asset("t1", asset.id) == asset
    assert store.get_asset("t2", asset.id) is None


def test_warm_workers_expire(store: JobStore) -> None:
    store.heartbeat("svd-xt", "gpu-0", ttl_s=60)
    store.heartbeat("svd-xt", "gpu-1", ttl_s=-1)
    assert store.warm_workers("svd-xt") == ["gpu-0"]


def test_async_watch_sees_current_state_then_progress_then_final(redis_url: str, store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)
    store.progress(job_id, "denoising", 1, 3)

    def drive() -> None:
        for step in (2, 3):
            store.progress(job_id, "denoising", step, 3)
        store.succeed(job_id, StoredResult())

    events = watch_while(redis_url, job_id, drive)
    assert events[0].kind == "job" and events[0].record.progress.step == 1
    assert [e.progress.step for e in events if e.kind == "progress"] == [2, 3]
    assert events[-1].kind == "job" and events[-1].record.status is JobStatus.succeeded


def test_async_wait_terminal(redis_url: str, store: JobStore) -> None:
    job_id = make_job(store)

    async def main() -> tuple:
        astore = AsyncJobStore.from_url(redis_url)
        t0 = time.monotonic()
        still = await astore.wait_terminal("t1", job_id, 0.3)
        waited = time.monotonic() - t0

        def finish() -> None:
            time.sleep(0.2)
            store.mark_running(job_id)
            store.succeed(job_id, StoredResult())

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, finish)
            done = await astore.wait_terminal("t1", job_id, 10)
        other = await astore.wait_terminal("t2", job_id, 1)
        counts = await astore.status_counts()
        durations = await astore.duration_stats("succeeded")
        await astore.redis.aclose()
        return still, waited, done, other, counts, durations

    still, waited, done, other, counts, durations = anyio.run(main)
    assert still.status is JobStatus.queued and 0.25 < waited < 2
    assert done.status is JobStatus.succeeded
    assert other is None
    assert counts["succeeded"] == 1 and counts["queued"] == 0
    assert durations["count"] == 1.0


def test_a_progress_message_older_than_the_state_already_sent_is_not_passed_on(redis_url: str, store: JobStore) -> None:
    """A watch subscribes, then reads the record: a progress published in between arrives after that
    state and is older than it, or the same progress again. The job's percent never goes back within a
    run and a step is reported once, so either is dropped."""
    job_id = make_job(store)
    store.mark_running(job_id)
    store.progress(job_id, "encode", 0, 1)  # the state the watch reads first: 2%

    def drive() -> None:
        channel = events_channel(job_id)
        store.redis.publish(channel, json.dumps({"type": "progress", "stage": "load", "step": 0, "total": 1}))
        # The very progress the record already holds: published, then read with the record, then delivered.
        store.redis.publish(channel, json.dumps({"type": "progress", "stage": "encode", "step": 0, "total": 1}))
        store.progress(job_id, "denoise", 1, 3)
        store.succeed(job_id, StoredResult())

    events = watch_while(redis_url, job_id, drive)
    assert events[0].kind == "job" and events[0].record.progress.stage == "encode"
    assert [(e.progress.stage, e.progress.step) for e in events if e.kind == "progress"] == [("denoise", 1)]
    assert events[-1].record.status is JobStatus.succeeded


def test_a_preview_the_record_already_showed_is_not_passed_on_again(redis_url: str, store: JobStore) -> None:
    """A preview published between the watch's subscription and its read of the record is in that
    record and then arrives as a message: it is sent once, with the record."""
    from api_schemas import LivePreview

    job_id = make_job(store)
    store.mark_running(job_id)
    first = LivePreview(step=1, total=2, image="data:image/jpeg;base64,AAA")
    store.preview(job_id, first)  # the state the watch reads first
    later = LivePreview(step=2, total=2, image="data:image/jpeg;base64,BBB")

    def drive() -> None:
        message = json.dumps({"type": "preview", **first.model_dump(mode="json")})
        store.redis.publish(events_channel(job_id), message)  # delivered after the record was read
        store.preview(job_id, later)
        store.succeed(job_id, StoredResult())

    events = watch_while(redis_url, job_id, drive)
    assert events[0].kind == "job" and events[0].record.preview == first
    assert [e.preview for e in events if e.kind == "preview"] == [later]
    assert events[-1].record.status is JobStatus.succeeded
