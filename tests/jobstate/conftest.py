"""A real redis-server for the job-state tests, flushed before each test."""

import pytest

from jobstate.store import JobStore


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url)
