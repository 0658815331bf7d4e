"""One job as the service runs it: job state in, engine run, outputs to storage, job state out.

The Celery task (`workers.tasks`) is a thin edge over :func:`execute`; everything that makes a job
safe to deliver more than once lives here:

- a job that already reached a terminal status is not run again (Redis delivers at least once);
- object keys depend only on the tenant and job id, so a re-run overwrites its own outputs;
- every failure becomes problem details on the job and the worker goes on to the next job, an
  out-of-memory error included (the accelerator's cache is emptied first);
- a run holds its job by a lease that the worker's heartbeat renews (`lease_s`); a worker that dies
  stops renewing it, and the API's reaper (`jobstate.reaper`) puts the job back on its queue within
  about a minute; a run whose lease expired while it still went on (a stalled worker) learns it at its
  next progress report and stops without writing anything, so a job is never run to the end twice at
  once; a delivery of a job that a live worker holds is dropped;
- a job whose worker died `max_deliveries` times (a poison job: it crashes the process) is failed
  with that reason instead of taking down one worker after another;
- a worker asked to stop (warm shutdown) stops the job within a step and hands it back: the job goes
  back to `queued` and `execute` returns `JobStatus.queued`, on which the task rejects its message
  with requeue, so another worker runs it;
- a job still running `job_time_limit_s` after it started here stops at its next denoising step and
  fails with problem type `time-limit` (504), long before the broker's visibility timeout (set above
  the limit) would hand it to a second worker;
- storage that is down while results upload is retried with backoff for `storage_retry_budget_s`,
  then the job fails saying so (it never stays `running`);
- progress and cancel checks are best effort while Redis is unreachable; the final transition is
  retried for `state_retry_budget_s`, and if Redis is still gone `JobStateUnavailable` tells the task
  to leave the message to the broker (it is delivered again once Redis is back).
"""

import contextlib
import dataclasses
import gc
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis.exceptions
import torch

from api_schemas import JobRequest, JobStatus, LivePreview
from api_schemas import Progress as ResourceProgress
from api_schemas.artifacts import content_type_for
from jobstate.operations import Transition
from jobstate.records import JobRecord, StoredArtifact, StoredResult, is_fit
from jobstate.store import JobStore
from storage.base import ObjectNotFound, Storage, StorageError
from storage.keys import asset_key, direction_key, job_key
from webhooks.messages import PROGRESS_EVENT, progress_worth_sending
from workers.directions import DirectionResolver
from workers.errors import (
    JobCanceled,
    JobInputError,
    JobTakenBack,
    JobTimeLimitExceeded,
    JobTooLarge,
    ModelUnavailableError,
    StorageUnavailable,
    WorkerShuttingDown,
    input_problem,
    internal_problem,
    model_problem,
    out_of_memory_problem,
    poison_problem,
    storage_problem,
    time_limit_problem,
    too_large_problem,
)
from workers.images import ImageResolver
from workers.models import ModelRegistry
from workers.remote_images import RemoteImages
from workers.settings import EngineSettings

log = logging.getLogger(__name__)


# Set by the Celery app when the worker is asked to stop (`worker_shutting_down`); read every step.
SHUTDOWN = threading.Event()
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)
T = TypeVar("T")

EnqueueWebhook = Callable[[JobRecord], bool]
"""Queue the webhook of a terminal job if it asked for one for this outcome (True when queued);
the worker's is `webhooks.messages.enqueue_job_webhook` bound to its Celery app and storage."""


@dataclass
class WorkerDeps:
    """What a worker process builds once and every job uses."""

    store: JobStore
    storage: Storage
    registry: ModelRegistry
    enqueue_webhook: EnqueueWebhook | None = None
    work_dir: Path | None = None
    run_job: Callable[..., Any] | None = None
    """The engine's `workers.engine.run_job` (the default), or a stand-in with its signature."""
    engine_settings: EngineSettings | None = None
    """What the engine reads (output threads, host memory), passed to the default `run_job`; its
    defaults when None."""
    remote_images: RemoteImages | None = None
    """Fetches images named by URL (`VSTEER_ALLOW_REMOTE_IMAGES`); URLs fail the job when None."""
    job_time_limit_s: float | None = None
    """Longest a job may run from its start here; past it the job stops at its next step and fails."""
    max_deliveries: int = 3
    """Runs a job may start before its next delivery fails it as a poison job."""
    storage_retry_budget_s: float = 120.0
    """How long an upload is retried while storage is unreachable."""
    state_retry_budget_s: float = 60.0
    """How long the final job-state transition is retried while Redis is unreachable."""
    lease_s: float = 30.0
    """How long a run's hold on its job lasts unless renewed (`worker_lost_after_s`)."""
    worker_id: str = field(default_factory=lambda: worker_identity(socket.gethostname()))
    """This worker process, as the runs it holds name it; unique per process start."""
    current_job: str | None = None
    """The job this process runs now, whose lease the heartbeat renews."""
    shutdown: threading.Event = field(default_factory=lambda: SHUTDOWN)


def worker_identity(name: str) -> str:
    """`<name>:<pid>:<random>`: a restarted worker (same name, perhaps the same pid in a container) is
    another process, so the runs its predecessor held are not taken for its own."""
    return f"{name}:{os.getpid()}:{secrets.token_hex(3)}"


def renew_lease(deps: WorkerDeps) -> bool | None:
    """Renew the lease of the job this process runs (the heartbeat calls it); None when it runs none,
    False when the job is no longer held by this process."""
    job_id = deps.current_job
    if job_id is None:
        return None
    return deps.store.renew_lease(job_id, deps.worker_id, deps.lease_s)


class JobStateUnavailable(Exception):
    """Redis stayed unreachable; the task must leave its message unacknowledged for redelivery."""


def execute(job_id: str, tenant: str, deps: WorkerDeps) -> JobStatus | None:
    """Run job `job_id` of `tenant` to a terminal status and return it (None for an unknown job)."""
    # 1. load the job; a terminal job is a redelivery of work already done
    record = deps.store.get(tenant, job_id)
    if record is None:
        log.warning("job %s of tenant %s does not exist; dropping the message", job_id, tenant)
        return None
    if record.status.is_terminal():
        log.info("job %s is already %s; not running it again", job_id, record.status)
        return record.status

    # 2. a job whose runs all ended with their worker dead is not given another worker to kill
    #    (when no reaper failed it first: its message came back after the visibility timeout)
    if record.attempts >= deps.max_deliveries and not _held_by_live_worker(record, deps):
        final = _retry_state(partial(deps.store.fail, job_id, poison_problem(job_id, record.attempts)), deps).record
        log.error("job %s started %d times without finishing; failed as a poison job", job_id, record.attempts)
        if final is not None:
            notify(final, deps)
        return final.status if final is not None else None

    # 3. claim it (queued or running → running; a running job is one whose worker died) with a lease
    deps.current_job = job_id
    try:
        claimed = deps.store.mark_running(job_id, deps.worker_id, deps.lease_s)
        if not claimed.applied:
            if claimed.record is not None and claimed.record.status is JobStatus.running:
                log.info("job %s is held by a live worker; dropping this delivery of it", job_id)
            return claimed.record.status if claimed.record else None

        notify(claimed.record, deps)  # `job.started`, for a job that asked for it

        # 4. run the engine, upload, record the outcome
        final = run_and_record(record, deps)
    finally:
        deps.current_job = None
    if final is None:
        return None
    if final.status is JobStatus.queued:
        return final.status  # handed back on shutdown

    # 5. announce the outcome to the job's webhook
    notify(final, deps)
    return final.status


def _held_by_live_worker(record: JobRecord, deps: WorkerDeps) -> bool:
    """A running job whose run still holds a lease: this delivery is a duplicate, not a new run."""
    return record.status is JobStatus.running and deps.store.lease_holder(record.id) is not None


def run_and_record(record: JobRecord, deps: WorkerDeps) -> JobRecord | None:
    """Run a claimed job and write its terminal status; exceptions end as a failed job, not a crash.

    Returns the job's record after the last transition (None when the run lost its hold on the job).
    """
    job_id = record.id
    out_of_memory = False
    store = deps.store
    owner = deps.worker_id
    write: Callable[[], Transition]
    try:
        result = render_and_upload(record, deps)
        write = partial(store.succeed, job_id, result, owner)
    except JobTakenBack:
        log.warning("job %s was taken back from this worker (its lease expired); the run stops here", job_id)
        return None
    except REDIS_DOWN as exc:
        # Job state (an asset record, say) was unreachable mid-run: not the job's fault, so it is not
        # failed; the task leaves the message for another delivery.
        raise JobStateUnavailable(f"job state unreachable while running: {exc}") from exc
    except WorkerShuttingDown:
        log.warning("worker shutting down: job %s goes back to the queue", job_id)
        write = partial(store.requeue, job_id, owner)
    except JobCanceled:
        log.info("job %s canceled", job_id)
        write = partial(store.mark_canceled, job_id, owner)
    except JobTimeLimitExceeded as exc:
        log.warning("job %s stopped: %s", job_id, exc)
        write = partial(store.fail, job_id, time_limit_problem(job_id, exc), owner)
    except JobTooLarge as exc:
        log.warning("job %s is too large for this worker: %s", job_id, exc.detail)
        write = partial(store.fail, job_id, too_large_problem(job_id, exc), owner)
    except JobInputError as exc:
        write = partial(store.fail, job_id, input_problem(job_id, exc), owner)
    except ModelUnavailableError as exc:
        write = partial(store.fail, job_id, model_problem(job_id, exc), owner)
    except StorageUnavailable as exc:
        log.error("job %s: %s", job_id, exc)
        write = partial(store.fail, job_id, storage_problem(job_id, exc), owner)
    except torch.OutOfMemoryError as exc:  # torch.cuda.OutOfMemoryError is the same class
        log.error("job %s ran out of accelerator memory: %s", job_id, exc)
        out_of_memory = True
        write = partial(store.fail, job_id, out_of_memory_problem(job_id, record.request, exc), owner)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        write = partial(store.fail, job_id, internal_problem(job_id, exc), owner)
    transition = _retry_state(write, deps)
    if out_of_memory:
        # Outside the except block, so that the traceback's frames (and their tensors) are gone.
        free_accelerator_memory()
    return transition.record


def render_and_upload(record: JobRecord, deps: WorkerDeps) -> StoredResult:
    """Render the job in a temporary folder and store every output under the job's keys."""
    # Imported here: the engine pulls in the pipeline, which the module's importers do not all need.
    from workers.engine import Preview, Progress, run_job
    from workers.preview import data_uri

    run = deps.run_job or partial(run_job, settings=deps.engine_settings)
    started = time.monotonic()
    limit = deps.job_time_limit_s
    job_id, tenant = record.id, record.tenant
    images = ImageResolver(
        fetch_asset=lambda asset_id: fetch_asset(deps, tenant, asset_id),
        fetch_url=deps.remote_images.fetch if deps.remote_images is not None else None,
    )
    directions = DirectionResolver(fetch=lambda direction_id: fetch_direction(deps, tenant, direction_id))

    hook = record.webhook()
    progress_hooks = hook is not None and PROGRESS_EVENT in hook[1]
    last_sent: tuple[str, int] | None = None

    def on_progress(progress: Progress) -> None:
        nonlocal last_sent
        try:
            ack = deps.store.progress(job_id, progress.stage, progress.step, progress.total, owner=deps.worker_id)
        except REDIS_DOWN as exc:
            # Progress is for watchers; the job goes on while Redis is away.
            log.warning("job %s: progress not recorded, job state unreachable: %s", job_id, exc)
        else:
            if ack.taken_back:
                raise JobTakenBack()
        if progress_hooks:
            marker = progress_worth_sending(progress.stage, progress.step, progress.total, last_sent)
            if marker is not None:
                last_sent = marker
                notify(running_with(record, progress.stage, progress.step, progress.total), deps)

    def on_preview(preview: Preview) -> None:
        live = LivePreview(step=preview.step, total=preview.total, image=data_uri(preview.jpeg))
        try:
            deps.store.preview(job_id, live, owner=deps.worker_id)
        except REDIS_DOWN as exc:
            log.warning("job %s: live preview not sent, job state unreachable: %s", job_id, exc)

    def should_cancel() -> bool:
        if deps.shutdown.is_set():
            raise WorkerShuttingDown()
        elapsed = time.monotonic() - started
        if limit is not None and elapsed > limit:
            raise JobTimeLimitExceeded(limit, elapsed)
        try:
            return deps.store.is_cancel_requested(job_id)
        except REDIS_DOWN:
            return False

    with tempfile.TemporaryDirectory(prefix=f"vsteer-{job_id}-", dir=deps.work_dir) as tmp:
        out_dir = Path(tmp)
        if is_fit(record):
            from workers.fit_job import run_fit

            fetch = partial(fetch_asset, deps, tenant)
            return run_fit(
                record, deps, out_dir, on_progress=on_progress, should_cancel=should_cancel, fetch_asset=fetch
            )
        outputs = run(
            JobRequest.model_validate(record.request),
            out_dir,
            registry=deps.registry,
            images=images,
            directions=directions,
            on_progress=on_progress,
            on_preview=on_preview,
            should_cancel=should_cancel,
            job_id=job_id,
        )
        report_worker_figures(deps, record.model, outputs.metrics)
        return upload_outputs(deps, record, outputs.files, out_dir, outputs.metrics)


def report_worker_figures(deps: WorkerDeps, model: str, metrics: dict[str, Any]) -> None:
    """Seconds per denoising step, and on CUDA the job's peak GPU memory, into job state for the API's
    `/metrics` (best effort: a figure lost while Redis is away is not worth failing a job for)."""
    steps = int(metrics.get("denoise_steps") or 0)
    denoise = float(metrics.get("timings", {}).get("denoise") or 0.0)
    try:
        if steps > 0 and denoise > 0:
            deps.store.observe_step(model, denoise / steps)
        if torch_cuda_ready():
            import torch

            deps.store.report_gpu_memory(model, deps.worker_id, torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
    except REDIS_DOWN as exc:
        log.warning("worker figures not recorded, job state unreachable: %s", exc)


def torch_cuda_ready() -> bool:
    """Whether this process has started CUDA (without importing torch where it is not loaded yet)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()


def fetch_asset(deps: WorkerDeps, tenant: str, asset_id: str) -> bytes:
    """An asset's bytes; KeyError (unknown asset) when the tenant has no such asset."""
    asset = deps.store.get_asset(tenant, asset_id)
    key = asset.key if asset is not None else asset_key(tenant, asset_id)
    return deps.storage.get(key)


def fetch_direction(deps: WorkerDeps, tenant: str, direction_id: str) -> bytes:
    """A stored direction's safetensors bytes; KeyError (ObjectNotFound) when the tenant has none."""
    return deps.storage.get(direction_key(tenant, direction_id))


def upload_outputs(
    deps: WorkerDeps, record: JobRecord, files: dict[str, Path], out_dir: Path, metrics: dict[str, Any]
) -> StoredResult:
    """Store each output at `jobs/<tenant>/<job_id>/<its path under out_dir>` and describe it."""
    stored: dict[str, StoredArtifact] = {}
    total = len(files)
    for done, (name, path) in enumerate(sorted(files.items()), start=1):
        relative = Path(path).resolve().relative_to(out_dir.resolve()).as_posix()
        key = job_key(record.tenant, record.id, relative)
        info = put_with_retries(deps, key, Path(path), content_type_for(relative))
        stored[name] = StoredArtifact(
            key=key,
            content_type=info.content_type or content_type_for(relative),
            bytes=info.size,
            sha256=info.sha256,
        )
        with contextlib.suppress(*REDIS_DOWN):
            if deps.store.progress(record.id, "uploading", done, total, owner=deps.worker_id).taken_back:
                raise JobTakenBack()
    return StoredResult.from_artifacts(stored, metrics)


def put_with_retries(deps: WorkerDeps, key: str, body: bytes | Path, content_type: str) -> Any:
    """`storage.put` of a file or bytes, retried with exponential backoff (0.5 s doubling to 8 s) while
    storage fails, for `deps.storage_retry_budget_s` in all; then `StorageUnavailable` says how long
    and why."""
    started = time.monotonic()
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            return deps.storage.put(key, body, content_type)
        except ObjectNotFound:
            raise
        except StorageError as exc:
            waited = time.monotonic() - started
            if waited + delay > deps.storage_retry_budget_s:
                raise StorageUnavailable(
                    f"could not store {key.rsplit('/', 1)[-1]!r}: storage was unreachable for {waited:.0f} s "
                    f"({attempt} attempts, retry budget {deps.storage_retry_budget_s:g} s): {exc}"
                ) from exc
            log.warning("upload of %s failed (attempt %d), retrying in %.1f s: %s", key, attempt, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def _retry_state(write: Callable[[], T], deps: WorkerDeps) -> T:
    """A job-state write, retried while Redis is unreachable (a restart takes seconds)."""
    started = time.monotonic()
    delay = 0.2
    while True:
        try:
            return write()
        except REDIS_DOWN as exc:
            if time.monotonic() - started + delay > deps.state_retry_budget_s:
                raise JobStateUnavailable(f"job state unreachable for {deps.state_retry_budget_s:g} s: {exc}") from exc
            log.warning("job state unreachable, retrying in %.1f s: %s", delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def running_with(record: JobRecord, stage: str, step: int, total: int) -> JobRecord:
    """The running job's record as of this progress report (what a `job.progress` webhook carries)."""
    return dataclasses.replace(record, status=JobStatus.running, progress=ResourceProgress.of(stage, step, total))


def notify(record: JobRecord | None, deps: WorkerDeps) -> None:
    """Queue the job's webhook for its terminal status, a running job's progress (the record carries it)
    or the start of its run (`webhooks.messages.job_webhook_message` decides); a broker error is logged,
    the job stands."""
    if deps.enqueue_webhook is None or record is None or record.status is JobStatus.queued:
        return
    try:
        deps.enqueue_webhook(record)
    except Exception:
        log.exception("could not queue the webhook of job %s (%s)", record.id, record.status)


def free_accelerator_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
