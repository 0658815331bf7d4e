"""A real redis-server for the webhook tests that build messages from job records, flushed before each test."""

import pytest

from jobstate.store import JobStore


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url)
