"""Live previews in job state, against a real redis-server: kept while running, published, dropped after."""

from api_schemas import JobStatus, LivePreview
from jobstate.records import StoredResult, new_job_id, to_resource
from jobstate.redis_keys import job_record_key
from jobstate.store import JobStore
from tests.jobstate.conftest import watch_while

REQUEST = {"model": "svd-xt", "image": "asset:abc", "seed": 1}


def make_job(store: JobStore) -> str:
    job_id = new_job_id("t1")
    store.create(job_id, "t1", "svd-xt", REQUEST)
    return job_id


def preview(step: int) -> LivePreview:
    return LivePreview(step=step, total=10, image=f"data:image/jpeg;base64,{step:04d}")


def test_only_the_running_owner_keeps_a_preview_and_the_resource_shows_it_while_running(store: JobStore) -> None:
    job_id = make_job(store)
    assert not store.preview(job_id, preview(1))  # queued: nothing to preview
    assert store.mark_running(job_id, worker="w1", lease_s=30).applied
    assert not store.preview(job_id, preview(2), owner="w2")  # not this worker's run
    assert store.preview(job_id, preview(3), owner="w1")
    assert store.preview(job_id, preview(5), owner="w1")
    record = store.get_any(job_id)
    assert record is not None and record.preview == preview(5)  # the latest only
    assert to_resource(record, lambda key: key).preview == preview(5)

    assert store.succeed(job_id, StoredResult(), owner="w1").applied
    finished = store.get_any(job_id)
    assert finished is not None and finished.preview is None
    assert not store.redis.hexists(job_record_key(job_id), "preview")
    assert to_resource(finished, lambda key: key).preview is None


def test_a_job_queued_again_loses_its_last_runs_preview(store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id, worker="w1", lease_s=30)
    store.preview(job_id, preview(4), owner="w1")
    assert store.requeue(job_id, owner="w1").applied
    record = store.get_any(job_id)
    assert record is not None and record.status is JobStatus.queued and record.preview is None


def test_watchers_get_each_preview_as_an_event(redis_url: str, store: JobStore) -> None:
    job_id = make_job(store)
    store.mark_running(job_id)

    def drive() -> None:
        store.preview(job_id, preview(2))
        store.progress(job_id, "denoise", 2, 10)
        store.preview(job_id, preview(4))
        store.succeed(job_id, StoredResult())

    events = watch_while(redis_url, job_id, drive)
    assert [e.kind for e in events] == ["job", "preview", "progress", "preview", "job"]
    assert [e.preview for e in events if e.kind == "preview"] == [preview(2), preview(4)]
