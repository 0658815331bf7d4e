"""A real redis-server for the job-state tests, flushed before each test."""

import time
from collections.abc import Callable

import anyio
import pytest

from jobstate.store import AsyncJobStore, JobEvent, JobStore


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore.from_url(redis_url)


def watch_while(redis_url: str, job_id: str, drive: Callable[[], None]) -> list[JobEvent]:
    """The events `AsyncJobStore.watch` yields for the job while `drive` (run in a thread once the
    watch has begun, after a short pause) changes it, until the watch ends at a terminal status."""

    async def main() -> list[JobEvent]:
        astore = AsyncJobStore.from_url(redis_url)
        events: list[JobEvent] = []

        def after_a_pause() -> None:
            time.sleep(0.2)
            drive()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, after_a_pause)
                async for event in astore.watch(job_id, heartbeat_s=5):
                    events.append(event)
        await astore.redis.aclose()
        return events

    return anyio.run(main)
