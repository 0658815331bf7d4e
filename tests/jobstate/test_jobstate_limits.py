"""The per-tenant cap on active jobs, the hand-back of a running job, and the per-key token bucket."""

import anyio
import pytest

from api_schemas import JobStatus
from jobstate.errors import RateLimited, TooManyActiveJobs
from jobstate.operations import RateLimit
from jobstate.records import new_job_id
from jobstate.store import AsyncJobStore, JobStore, failure

REQUEST = {"model": "svd-xt", "image": "asset:abc", "seed": 1}


def test_the_cap_counts_queued_and_running_jobs_of_the_tenant(store: JobStore) -> None:
    first, second = new_job_id("t1"), new_job_id("t1")
    store.create(first, "t1", "svd-xt", REQUEST, max_active=2)
    store.create(second, "t1", "svd-xt", REQUEST, max_active=2, idempotency=("k", "h"))
    store.mark_running(first)
    with pytest.raises(TooManyActiveJobs) as refused:
        store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, max_active=2)
    assert (refused.value.active, refused.value.cap) == (2, 2)
    # a replay of an accepted request still gets its job; another tenant has its own count
    assert (
        store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, max_active=2, idempotency=("k", "h")).record.id
        == second
    )
    store.create(new_job_id("t2"), "t2", "svd-xt", REQUEST, max_active=2)
    # a finished job frees its place
    store.fail(first, failure("Failed", "test"))
    store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, max_active=2)


def test_a_handed_back_job_is_queued_again_without_using_up_a_delivery(store: JobStore) -> None:
    job_id = new_job_id("t1")
    store.create(job_id, "t1", "svd-xt", REQUEST)
    store.mark_running(job_id)
    store.progress(job_id, "denoise", 3, 10)
    back = store.requeue(job_id)
    assert back.applied and back.record.status is JobStatus.queued
    assert back.record.attempts == 0 and back.record.progress is None
    assert store.list_jobs("t1", status=JobStatus.queued).records[0].id == job_id
    assert not store.requeue(job_id).applied  # only a running job goes back


def test_the_token_bucket_allows_a_burst_then_the_rate(redis_url: str) -> None:
    async def main() -> list[bool]:
        store = AsyncJobStore.from_url(redis_url)
        decisions = [await store.take_token("key1", rate_per_s=1.0, burst=3, tenant="t1") for _ in range(4)]
        other = await store.take_token("key2", rate_per_s=1.0, burst=3, tenant="t1")
        await store.redis.aclose()
        assert decisions[-1].retry_after_s > 0 and other.allowed
        return [d.allowed for d in decisions]

    assert anyio.run(main) == [True, True, True, False]


def test_create_takes_its_token_from_the_keys_bucket(store: JobStore, redis_url: str) -> None:
    rate = RateLimit("key1", rate_per_s=0.001, burst=2)
    first = new_job_id("t1")
    store.create(first, "t1", "svd-xt", REQUEST, rate=rate)
    # the same bucket as every other request of the key: a plain request takes the second token
    assert anyio.run(lambda: AsyncJobStore.from_url(redis_url).take_token("key1", 0.001, 2, tenant="t1")).allowed
    refused = new_job_id("t1")
    with pytest.raises(RateLimited) as caught:
        store.create(refused, "t1", "svd-xt", REQUEST, rate=rate)
    assert caught.value.retry_after_s > 0
    assert store.get("t1", refused) is None
    assert [r.id for r in store.list_jobs("t1").records] == [first]
    # another key's bucket is its own
    store.create(new_job_id("t1"), "t1", "svd-xt", REQUEST, rate=RateLimit("key2", 0.001, 2))
