"""Cursor pages: every job exactly once, newest first, whatever the page size and the inserts between pages."""

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_schemas import JobStatus
from jobstate.records import StoredResult, new_job_id
from jobstate.redis_keys import job_record_key
from jobstate.store import JobStore


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    initial=st.integers(min_value=0, max_value=12),
    limit=st.integers(min_value=1, max_value=5),
    inserts=st.lists(st.integers(min_value=0, max_value=3), max_size=6),
    finished=st.sets(st.integers(min_value=0, max_value=11)),
)
def test_pages_are_complete_ordered_and_stable(
    redis_url: str, initial: int, limit: int, inserts: list[int], finished: set[int]
) -> None:
    redis.Redis.from_url(redis_url).flushall()
    store = JobStore.from_url(redis_url)
    ids = []
    for i in range(initial):
        ids.append(new_job_id("t", now=1_700_000_000 + i))
        store.create(ids[-1], "t", "m", {})
    done = [ids[i] for i in sorted(finished) if i < len(ids)]
    for job_id in done:
        store.mark_running(job_id)
        store.succeed(job_id, StoredResult())

    seen: list[str] = []
    cursor = None
    for page_number in range(100):
        page = store.list_jobs("t", cursor=cursor, limit=limit)
        assert len(page.records) <= limit
        seen += [r.id for r in page.records]
        # Newer jobs arriving between pages do not shift what the cursor points at.
        for _ in range(inserts[page_number] if page_number < len(inserts) else 0):
            store.create(new_job_id("t"), "t", "m", {})
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids[::-1]

    succeeded = store.list_jobs("t", status=JobStatus.succeeded, limit=100)
    assert [r.id for r in succeeded.records] == done[::-1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    total=st.integers(min_value=0, max_value=14),
    limit=st.integers(min_value=1, max_value=4),
    gone=st.sets(st.integers(min_value=0, max_value=13)),
    left_out=st.sets(st.integers(min_value=0, max_value=13)),
)
def test_pages_are_full_past_expired_and_left_out_records(
    redis_url: str, total: int, limit: int, gone: set[int], left_out: set[int]
) -> None:
    """Records that expired (their index entries linger until read) and records `keep` leaves out do
    not shorten a page: every page but the last holds `limit` records, and the last has no cursor."""
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    store = JobStore.from_url(redis_url)
    ids = [new_job_id("t", now=1_700_000_000 + i) for i in range(total)]
    for i, job_id in enumerate(ids):
        store.create(job_id, "t", "m", {"hidden": i in left_out})
    for i in gone & set(range(total)):
        r.delete(job_record_key(ids[i]))  # as a retention TTL would
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = store.list_jobs("t", cursor=cursor, limit=limit, keep=lambda rec: not rec.request["hidden"])
        pages.append([rec.id for rec in page.records])
        cursor = page.next_cursor
        if cursor is None:
            break
    expected = [job_id for i, job_id in enumerate(ids) if i not in gone and i not in left_out][::-1]
    assert [job_id for p in pages for job_id in p] == expected
    assert all(len(p) == limit for p in pages[:-1]) and len(pages[-1]) <= limit
    assert pages[-1] or len(pages) == 1  # no empty page after a cursor
