"""The API's reaper: every `reap_every_s` it queues again the running jobs whose worker was lost, and
queues the side-by-side of each comparison whose children are all done.

Each API process runs one, started in the lifespan; the scan is one atomic Lua step per job
(`jobstate.reaper`), so several processes reaping at once neither duplicate a job nor lose one, and
no leader is needed. A job this process ends (failed as a poison job, or canceled because its cancel
was asked for while its worker died) gets its webhook from here, as a job canceled while queued does
from the cancel route.

Leases live on Redis's clock, so a Redis that was unreachable for longer than `worker_lost_after_s`
may come back with every running job's lease expired while the workers wait to reach it again: the
reaper then holds off until it has reached Redis for a whole `worker_lost_after_s`, long enough for a
live worker's heartbeat to renew its lease.
"""

import logging
import time

import anyio
import redis.exceptions

from jobstate.comparisons import queue_ready_compositions
from jobstate.reaper import reap_once
from jobstate.records import JobRecord, Presign
from jobstate.store import AsyncJobStore
from service.queue import JobQueue
from service.settings import Settings
from storage.base import Storage
from storage.keys import RETAINED_PREFIXES
from storage.local import LocalStorage

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 3600.0  # how often local storage is swept for results past the retention


class Reaper:
    def __init__(
        self,
        store: AsyncJobStore,
        queue: JobQueue,
        presign: Presign,
        settings: Settings,
        storage: Storage | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.presign = presign
        self.settings = settings
        self.storage = storage
        self._reachable_since: float | None = None
        self._swept_at: float | None = None

    async def run_forever(self) -> None:
        """Scan every `reap_every_s` until cancelled; errors are logged, never raised."""
        while True:
            await self.scan()
            await self.compose()
            await self.sweep()
            await anyio.sleep(self.settings.reap_every_s)

    async def sweep(self, now: float | None = None) -> None:
        """Once every `SWEEP_EVERY_S`: delete local-storage result files older than the retention (an
        S3 bucket has its lifecycle rule instead)."""
        days = self.settings.retention_days
        if not isinstance(self.storage, LocalStorage) or days <= 0:
            return
        now = time.monotonic() if now is None else now
        if self._swept_at is not None and now - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = now
        try:
            gone = await anyio.to_thread.run_sync(self.storage.expire, RETAINED_PREFIXES, days * 86400.0)
        except OSError as exc:
            log.warning("reaper: expired results not swept: %s", exc)
            return
        if gone:
            log.info("reaper: %d result files past the %d-day retention deleted", gone, days)

    async def compose(self) -> None:
        """Queue the side-by-side of every comparison whose children are all done (once per comparison,
        whichever process or request gets there first), so that none waits for a client to ask."""
        try:
            await queue_ready_compositions(self.store)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("reaper: comparisons not checked, job state unreachable: %s", exc)
        except Exception:
            log.exception("reaper: comparisons not checked")

    async def scan(self) -> None:
        now = time.monotonic()
        try:
            await self.store.ping()
            if self._reachable_since is None:
                self._reachable_since = now
            if now - self._reachable_since < self.settings.worker_lost_after_s:
                return
            _, ended = await reap_once(self.store, self.settings.max_deliveries)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._reachable_since = None
            log.warning("reaper: job state unreachable: %s", exc)
            return
        except Exception:
            log.exception("reaper: scan failed")
            return
        for record in ended:
            await self._announce(record)

    async def _announce(self, record: JobRecord) -> None:
        try:
            await self.queue.enqueue_webhook(record, self.presign)
        except Exception:
            log.exception("could not queue the webhook of job %s (%s)", record.id, record.status)
