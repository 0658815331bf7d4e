"""A real redis-server for the job-state tests, flushed before each test."""

from collections.abc import Iterator

import pytest
import redis

from jobstate.store import JobStore
from tests.servers import RedisServer, start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("jobstate-redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url)
