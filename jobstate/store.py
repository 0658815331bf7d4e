"""Job state stores over Redis: `JobStore` (sync, for Celery workers) and `AsyncJobStore` (for the API).

Both run the same operations from `jobstate.operations` (which name their keys from
`jobstate.redis_keys` and their scripts from `jobstate.scripts`): an `Op` is one round trip to Redis,
a `Flow` a few (`jobstate.steps`). A store holds two clients: job state's and the Celery broker's,
the same one unless job state is on Redis Cluster (`jobstate.connections`).

How a worker drives a job (see also `webhooks.messages.enqueue_job_webhook`):

    store = JobStore.from_url(redis_url)
    me = "gpu0@host:1234:5f3a"                # this worker process (`worker` below)
    t = store.mark_running(job_id, worker=me, lease_s=30)  # queued → running; stamps started_at, counts attempts
    if not t.applied: return                  # terminal (redelivered after it finished), or held by a live worker
    store.renew_lease(job_id, me, 30)         # every heartbeat while it runs (a thread of the worker)
    ack = store.progress(job_id, "denoising", step, total, owner=me)   # every step; tells SSE clients
    if ack.taken_back: return                 # the lease expired and the reaper queued the job again
    if ack.cancel_requested: store.mark_canceled(job_id, owner=me); return
    store.succeed(job_id, StoredResult(video=StoredArtifact(key=..., content_type="video/mp4", ...)), owner=me)
    # or: store.fail(job_id, failure("Out of memory", "CUDA ran out of memory at 1024x576"), owner=me)
    # or, shutting down: store.requeue(job_id, owner=me)  # running → queued; the message goes back to the queue

A running job whose worker stops renewing its lease (the process died) is put back on its queue by
`reap` (the API runs it every few seconds, `service.reaper`), and a cancel of it ends it at once.

A terminal job never changes again: every transition is refused (``applied=False``) once the job has
succeeded, failed or been canceled.
"""

import json
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import redis
import redis.asyncio as aioredis

from api_schemas import JobStatus, LivePreview, Problem, Progress
from jobstate import operations
from jobstate.connections import async_client, sync_client
from jobstate.dispatch import undispatch_key
from jobstate.operations import AnchorPage, Created, Page, ProgressAck, RateDecision, Transition
from jobstate.records import AnchorRecord, AnchorVersion, AssetRecord, JobRecord, StoredResult
from jobstate.redis_keys import events_channel
from jobstate.scripts import BROKER_SCRIPTS, SAME_SERVER_SCRIPTS, SCRIPTS
from jobstate.steps import Flow, Op

T = TypeVar("T")


def failure(title: str, detail: str, type_: str = "about:blank", status: int = 500) -> Problem:
    """The `error` of a failed job, as problem details."""
    return Problem(type=type_, title=title, status=status, detail=detail)


class JobStore:
    """Synchronous job state; one instance per process, over a `redis.Redis` client (or a
    `redis.RedisCluster`, with the broker's `redis.Redis` as `broker`)."""

    def __init__(
        self, client: "redis.Redis | redis.RedisCluster", broker: "redis.Redis | redis.RedisCluster | None" = None
    ) -> None:
        self.redis = client
        self.broker = broker if broker is not None else client
        self._scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}
        self._scripts |= {name: self.broker.register_script(src) for name, src in BROKER_SCRIPTS.items()}
        self._same_server = _same_server(client, broker)

    @classmethod
    def from_url(cls, url: str, broker_url: str | None = None, **kwargs: Any) -> "JobStore":
        """`url` as `jobstate.connections` reads it; `broker_url` when the broker is another Redis."""
        client = sync_client(url, **kwargs)
        return cls(client, sync_client(broker_url, **kwargs) if broker_url and broker_url != url else None)

    def _once(self, op: Op[T]) -> T:
        if op.undispatch is not None and op.script in self._same_server:
            keys, args = [*op.keys, undispatch_key(op.undispatch)], [*op.args, op.undispatch]
            return op.decode(self._same_server[op.script](keys=keys, args=args))
        if op.script is not None:
            raw = self._scripts[op.script](keys=list(op.keys), args=list(op.args))
        else:
            raw = (self.broker if op.broker else self.redis).execute_command(*op.command)
        if op.undispatch is not None:
            self.redis.execute_command("ZREM", undispatch_key(op.undispatch), op.undispatch)
        return op.decode(raw)

    def run(self, op: Op[T] | Flow[T]) -> T:
        if isinstance(op, Op):
            return self._once(op)
        return _drive(op, self._once)

    # jobs
    def create(self, job_id: str, tenant: str, model: str, request: Mapping[str, Any], **options: Any) -> Created:
        """Create a queued job; `options` (idempotency, limits, the task to queue) as `operations.create_op`."""
        return self.run(operations.create_op(job_id, tenant, model, request, **options))

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        return self.run(operations.get_op(tenant, job_id))

    def get_any(self, job_id: str) -> JobRecord | None:
        return self.run(operations.get_any_op(job_id))

    def list_jobs(
        self,
        tenant: str,
        cursor: str | None = None,
        limit: int = 20,
        status: JobStatus | None = None,
        keep: Callable[[JobRecord], bool] | None = None,
    ) -> Page:
        return self.run(operations.list_op(tenant, cursor=cursor, limit=limit, status=status, keep=keep))

    def mark_running(self, job_id: str, worker: str | None = None, lease_s: float = 30.0) -> Transition:
        return self.run(operations.mark_running_op(job_id, worker, lease_s))

    def renew_lease(self, job_id: str, worker: str, lease_s: float) -> bool:
        return self.run(operations.renew_lease_op(job_id, worker, lease_s))

    def lease_holder(self, job_id: str) -> str | None:
        return self.run(operations.lease_holder_op(job_id))

    def progress(self, job_id: str, stage: str, step: int, total: int, owner: str | None = None) -> ProgressAck:
        return self.run(operations.progress_op(job_id, stage, step, total, owner=owner))

    def preview(self, job_id: str, preview: LivePreview, owner: str | None = None) -> bool:
        return self.run(operations.preview_op(job_id, preview, owner))

    def succeed(self, job_id: str, result: StoredResult, owner: str | None = None) -> Transition:
        return self.run(operations.succeed_op(job_id, result, owner))

    def fail(self, job_id: str, error: Problem, owner: str | None = None) -> Transition:
        return self.run(operations.fail_op(job_id, error, owner))

    def reap(self, max_deliveries: int) -> list[operations.Reaped]:
        return self.run(operations.reap_op(max_deliveries))

    def fail_lost(self, job_id: str, error: Problem, worker: str) -> Transition:
        return self.run(operations.fail_lost_op(job_id, error, worker))

    def request_cancel(self, job_id: str) -> tuple[str, JobRecord | None]:
        return self.run(operations.request_cancel_op(job_id))

    def is_cancel_requested(self, job_id: str) -> bool:
        return self.run(operations.is_cancel_requested_op(job_id))

    def mark_canceled(self, job_id: str, owner: str | None = None) -> Transition:
        return self.run(operations.mark_canceled_op(job_id, owner))

    def requeue(self, job_id: str, owner: str | None = None) -> Transition:
        return self.run(operations.requeue_op(job_id, owner))

    # assets, workers, stats
    def put_asset(self, asset: AssetRecord) -> None:
        self.run(operations.put_asset_op(asset))

    def get_asset(self, tenant: str, asset_id: str) -> AssetRecord | None:
        return self.run(operations.get_asset_op(tenant, asset_id))

    def observe_step(self, model: str, seconds: float) -> None:
        self.run(operations.observe_step_op(model, seconds))

    def report_gpu_memory(self, model: str, worker: str, peak_bytes: int) -> None:
        self.run(operations.report_gpu_memory_op(model, worker, peak_bytes))

    def heartbeat(self, model: str, worker: str, ttl_s: float = 60.0) -> None:
        self.run(operations.heartbeat_op(model, worker, ttl_s))

    def warm_workers(self, model: str) -> list[str]:
        return self.run(operations.warm_workers_op(model))

    def ping(self) -> bool:
        return self.run(operations.ping_op())


def _same_server(client: Any, broker: Any) -> dict[str, Any]:
    """`SAME_SERVER_SCRIPTS` registered on `client` when the broker is the job-state Redis itself (no
    `broker` of its own, and not a cluster): a task's push and its record's removal from `dispatch` are
    then one round trip. Empty otherwise."""
    if broker is not None or isinstance(client, (redis.RedisCluster, aioredis.RedisCluster)):
        return {}
    return {name: client.register_script(src) for name, src in SAME_SERVER_SCRIPTS.items()}


def _percent(progress: Progress | None, otherwise: float = 0.0) -> float:
    """A job's percent for ordering its progress; `otherwise` for a stage without one (a fit's)."""
    return otherwise if progress is None or progress.percent is None else progress.percent


def _drive(flow: Flow[T], once: Any) -> T:
    """Run a flow's steps with `once` (a sync store's), sending each reply, throwing each error in."""
    try:
        step = next(flow)
        while True:
            try:
                reply = once(step)
            except Exception as error:
                step = flow.throw(error)  # the flow re-raises it, after any undo
            else:
                step = flow.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: the whole record (`job`), a progress tick, a live preview, or a
    heartbeat."""

    kind: Literal["job", "progress", "preview", "heartbeat"]
    record: JobRecord | None = None
    progress: Progress | None = None
    preview: LivePreview | None = None


class AsyncJobStore:
    """Asynchronous job state for the API, over a `redis.asyncio.Redis` client (or a
    `redis.asyncio.RedisCluster`, with the broker's `redis.asyncio.Redis` as `broker`)."""

    def __init__(
        self,
        client: "aioredis.Redis | aioredis.RedisCluster",
        broker: "aioredis.Redis | aioredis.RedisCluster | None" = None,
    ) -> None:
        self.redis = client
        self.broker = broker if broker is not None else client
        self._scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}
        self._scripts |= {name: self.broker.register_script(src) for name, src in BROKER_SCRIPTS.items()}
        self._same_server = _same_server(client, broker)

    @classmethod
    def from_url(cls, url: str, broker_url: str | None = None, **kwargs: Any) -> "AsyncJobStore":
        """`url` as `jobstate.connections` reads it; `broker_url` when the broker is another Redis."""
        client = async_client(url, **kwargs)
        return cls(client, async_client(broker_url, **kwargs) if broker_url and broker_url != url else None)

    async def aclose(self) -> None:
        await self.redis.aclose()
        if self.broker is not self.redis:
            await self.broker.aclose()

    async def _once(self, op: Op[T]) -> T:
        if op.undispatch is not None and op.script in self._same_server:
            keys, args = [*op.keys, undispatch_key(op.undispatch)], [*op.args, op.undispatch]
            return op.decode(await self._same_server[op.script](keys=keys, args=args))
        if op.script is not None:
            raw = await self._scripts[op.script](keys=list(op.keys), args=list(op.args))
        else:
            raw = await (self.broker if op.broker else self.redis).execute_command(*op.command)
        if op.undispatch is not None:
            await self.redis.execute_command("ZREM", undispatch_key(op.undispatch), op.undispatch)
        return op.decode(raw)

    async def run(self, op: Op[T] | Flow[T]) -> T:
        if isinstance(op, Op):
            return await self._once(op)
        step = next(op)
        while True:
            try:
                reply = await self._once(step)
            except Exception as error:
                step = op.throw(error)  # the flow re-raises it, after any undo
            else:
                try:
                    step = op.send(reply)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    # jobs
    async def create(self, job_id: str, tenant: str, model: str, request: Mapping[str, Any], **options: Any) -> Created:
        """Create a queued job; `options` (idempotency, limits, the task to queue) as `operations.create_op`."""
        return await self.run(operations.create_op(job_id, tenant, model, request, **options))

    async def get(self, tenant: str, job_id: str) -> JobRecord | None:
        return await self.run(operations.get_op(tenant, job_id))

    async def get_any(self, job_id: str) -> JobRecord | None:
        return await self.run(operations.get_any_op(job_id))

    async def list_jobs(
        self,
        tenant: str,
        cursor: str | None = None,
        limit: int = 20,
        status: JobStatus | None = None,
        keep: Callable[[JobRecord], bool] | None = None,
    ) -> Page:
        return await self.run(operations.list_op(tenant, cursor=cursor, limit=limit, status=status, keep=keep))

    async def mark_running(self, job_id: str) -> Transition:
        return await self.run(operations.mark_running_op(job_id))

    async def queue_positions(self, job_ids: Sequence[str]) -> list[int | None]:
        """Each job's place in its model's queue (0 = next); None where it is not waiting there."""
        return await self.run(operations.queue_positions_op(job_ids)) if job_ids else []

    async def delete(self, job_id: str) -> tuple[str, JobStatus | None]:
        """Remove a finished job's record (`operations.delete_op`); its stored objects are the caller's."""
        return await self.run(operations.delete_op(job_id))

    async def progress(self, job_id: str, stage: str, step: int, total: int) -> ProgressAck:
        return await self.run(operations.progress_op(job_id, stage, step, total))

    async def succeed(self, job_id: str, result: StoredResult) -> Transition:
        return await self.run(operations.succeed_op(job_id, result))

    async def fail(self, job_id: str, error: Problem) -> Transition:
        return await self.run(operations.fail_op(job_id, error))

    async def request_cancel(self, job_id: str) -> tuple[str, JobRecord | None]:
        return await self.run(operations.request_cancel_op(job_id))

    async def is_cancel_requested(self, job_id: str) -> bool:
        return await self.run(operations.is_cancel_requested_op(job_id))

    async def mark_canceled(self, job_id: str) -> Transition:
        return await self.run(operations.mark_canceled_op(job_id))

    async def reap(self, max_deliveries: int) -> list[operations.Reaped]:
        """Queue again every running job whose worker was lost (`operations.reap_op`)."""
        return await self.run(operations.reap_op(max_deliveries))

    async def fail_lost(self, job_id: str, error: Problem, worker: str) -> Transition:
        return await self.run(operations.fail_lost_op(job_id, error, worker))

    async def take_token(self, subject: str, rate_per_s: float, burst: int, *, tenant: str) -> RateDecision:
        """One request's token from `subject`'s bucket, in `tenant`'s shard (`operations.rate_limit_op`)."""
        return await self.run(operations.rate_limit_op(subject, tenant, rate_per_s, burst))

    # assets, workers, stats
    async def put_asset(self, asset: AssetRecord) -> None:
        await self.run(operations.put_asset_op(asset))

    async def get_asset(self, tenant: str, asset_id: str) -> AssetRecord | None:
        return await self.run(operations.get_asset_op(tenant, asset_id))

    async def list_assets(self, tenant: str, cursor: str | None = None, limit: int = 20) -> operations.AssetPage:
        return await self.run(operations.list_assets_op(tenant, cursor=cursor, limit=limit))

    # anchor sets
    async def put_anchor(self, tenant: str, anchor_id: str, version: AnchorVersion, *, new: bool) -> int:
        return await self.run(operations.put_anchor_op(tenant, anchor_id, version, new=new))

    async def get_anchor(self, tenant: str, anchor_id: str, version: int | None = None) -> AnchorRecord | None:
        return await self.run(operations.get_anchor_op(tenant, anchor_id, version))

    async def list_anchors(self, tenant: str, cursor: str | None = None, limit: int = 20) -> AnchorPage:
        return await self.run(operations.list_anchors_op(tenant, cursor=cursor, limit=limit))

    async def delete_anchor(self, tenant: str, anchor_id: str) -> bool:
        return await self.run(operations.delete_anchor_op(tenant, anchor_id))

    async def warm_workers(self, model: str) -> list[str]:
        return await self.run(operations.warm_workers_op(model))

    async def status_counts(self) -> dict[str, int]:
        return await self.run(operations.status_counts_op())

    async def duration_stats(self, status: str) -> dict[str, float]:
        return await self.run(operations.duration_stats_op(status))

    async def queue_depth(self, queue: str) -> int:
        return await self.run(operations.queue_depth_op(queue))

    async def running_count(self, model: str) -> int:
        return await self.run(operations.running_count_op(model))

    async def step_stats(self, model: str) -> dict[str, float]:
        return await self.run(operations.step_stats_op(model))

    async def gpu_memory(self, model: str, newer_than: float) -> dict[str, int]:
        return await self.run(operations.gpu_memory_op(model, newer_than))

    async def ping(self) -> bool:
        return await self.run(operations.ping_op())

    # events
    async def watch(self, job_id: str, heartbeat_s: float = 15.0) -> AsyncGenerator[JobEvent, None]:
        """The job's events: first the current record (so late subscribers see the state), then
        progress ticks and the record again on every status change, until a terminal status.
        A `heartbeat` event comes after `heartbeat_s` of silence. Nothing if the job does not exist.
        A progress published between the subscription and a read of the record arrives after that
        record and is older than it, or is the very progress that record holds; since a run's percent
        never goes back and each step is reported once, such a message is dropped. So is a preview equal
        to the one the record already showed.
        """
        pubsub = self.redis.pubsub()
        # Subscribe before reading the state, so no change can fall between the two.
        await pubsub.subscribe(events_channel(job_id))
        try:
            record = await self.get_any(job_id)
            if record is None:
                return
            yield JobEvent("job", record=record)
            if record.status.is_terminal():
                return
            shown, last = _percent(record.progress), record.progress  # how far the state already sent had got
            seen_preview = record.preview
            quiet_since = time.monotonic()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=heartbeat_s)
                if message is None:
                    if time.monotonic() - quiet_since >= heartbeat_s:
                        quiet_since = time.monotonic()
                        yield JobEvent("heartbeat")
                    continue
                quiet_since = time.monotonic()
                event = json.loads(message["data"])
                if event["type"] == "progress":
                    progress = Progress.of(event["stage"], int(event["step"]), int(event["total"]))
                    if progress == last or (progress.percent is not None and progress.percent < shown):
                        continue  # already sent, or older than what was
                    shown, last = _percent(progress, shown), progress
                    yield JobEvent("progress", progress=progress)
                    continue
                if event["type"] == "preview":
                    event.pop("type")
                    preview = LivePreview.model_validate(event)
                    if preview != seen_preview:  # else the record already sent showed it
                        seen_preview = preview
                        yield JobEvent("preview", preview=preview)
                    continue
                record = await self.get_any(job_id)
                if record is None:
                    return
                yield JobEvent("job", record=record)
                if record.status.is_terminal():
                    return
                shown, last = _percent(record.progress), record.progress  # a new run starts again from 0
                seen_preview = record.preview
        finally:
            # Shielded: when the consumer is cancelled (client gone, wait over) the connection
            # must still go back to the pool.
            with anyio.CancelScope(shield=True):
                await pubsub.unsubscribe()
                await pubsub.aclose()

    async def wait_terminal(self, tenant: str, job_id: str, timeout_s: float) -> JobRecord | None:
        """The record once terminal, or its latest state after `timeout_s`; None if not this tenant's."""
        latest = await self.get(tenant, job_id)
        if latest is None or latest.status.is_terminal() or timeout_s <= 0:
            return latest
        with anyio.move_on_after(timeout_s):
            async with aclosing(self.watch(job_id, heartbeat_s=min(timeout_s, 10.0))) as events:
                async for event in events:
                    if event.record is not None:
                        latest = event.record
                        if latest.status.is_terminal():
                            break
        return latest
