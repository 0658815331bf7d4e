"""Retention against a real redis-server: a finished job's record expires, and its index entries go with it."""

from api_schemas import JobStatus
from jobstate.records import StoredResult, new_job_id
from jobstate.redis_keys import job_record_key, tenant_index
from jobstate.store import JobStore

REQUEST = {"model": "svd-xt", "image": "asset:abc", "seed": 1}
DAY = 86400


def make_job(store: JobStore, retain_s: int) -> str:
    job_id = new_job_id("t1")
    store.create(job_id, "t1", "svd-xt", REQUEST, retain_s=retain_s)
    return job_id


def test_the_record_expires_from_the_end_of_the_job_not_before(store: JobStore) -> None:
    kept, unbounded, canceled = make_job(store, 30 * DAY), make_job(store, 0), make_job(store, 30 * DAY)
    for job_id in (kept, unbounded):
        assert store.redis.ttl(job_record_key(job_id)) == -1  # queued: kept however long it waits
        store.mark_running(job_id)
        assert store.redis.ttl(job_record_key(job_id)) == -1
        assert store.succeed(job_id, StoredResult()).applied
    assert 30 * DAY - 5 <= store.redis.ttl(job_record_key(kept)) <= 30 * DAY
    assert store.redis.ttl(job_record_key(unbounded)) == -1  # 0 keeps it
    # Every way to a terminal status starts the clock: a queued job canceled here.
    outcome, record = store.request_cancel(canceled)
    assert record is not None and record.status is JobStatus.canceled, outcome
    assert 30 * DAY - 5 <= store.redis.ttl(job_record_key(canceled)) <= 30 * DAY


def test_an_expired_job_leaves_the_tenants_lists_as_they_are_read(store: JobStore) -> None:
    gone, staying = make_job(store, DAY), make_job(store, DAY)
    for job_id in (gone, staying):
        store.mark_running(job_id)
        store.succeed(job_id, StoredResult())
    store.redis.delete(job_record_key(gone))  # as its TTL would
    page = store.list_jobs("t1")
    assert [r.id for r in page.records] == [staying]
    assert store.redis.zscore(tenant_index("t1"), gone) is None
    assert store.redis.zscore(tenant_index("t1", JobStatus.succeeded), gone) is not None  # until that list is read
    assert [r.id for r in store.list_jobs("t1", status=JobStatus.succeeded).records] == [staying]
    assert store.redis.zscore(tenant_index("t1", JobStatus.succeeded), gone) is None
