"""The Celery app of the GPU workers, and what a worker process builds when it starts.

Start one worker per GPU, consuming the queues of the models it serves:

    celery -A workers.celery_app worker --pool solo --concurrency 1 -Q gpu.tiny --hostname gpu0@%h

Why these settings (see DESIGN.md, "Worker process model"):

- solo pool, one process: CUDA cannot be used in a forked child once the parent initialised it, and
  the model must be loaded once and stay warm in the process that runs the jobs;
- `task_acks_late` + `task_reject_on_worker_lost`: a job whose worker died is delivered again, not lost
  (the job body is idempotent, see `workers.job_runner`); the heartbeat thread renews the lease of the
  running job every `heartbeat_s`, so that when the process dies the API's reaper queues the job again
  within about `worker_lost_after_s` (`jobstate.reaper`) instead of it waiting out the visibility timeout;
- prefetch 1: an idle worker can take the next job instead of it waiting behind a long one;
- the broker's visibility timeout exceeds the longest queue wait plus the longest job, or Redis would
  hand a running job to a second worker; a job that runs past the longest (`job_time_limit_s`) is
  stopped and failed (`workers.job_runner`), so the bound holds;
- `worker_cancel_long_running_tasks_on_connection_loss`: after a broker disconnect the message comes
  back, so the running copy is stopped rather than run twice;
- warm shutdown (SIGTERM): `worker_shutting_down` sets `workers.job_runner.SHUTDOWN`; the running job
  stops at its next step, goes back to `queued` and its message is rejected with requeue, so another
  worker takes it at once instead of the shutdown waiting for the whole job (or the job being lost
  when the shutdown grace period runs out and the process is killed).

The worker's settings (`workers.settings.get_settings`) are read once, when this module builds the
app, so a bad variable stops the worker before it starts; every part gets its values from them.
Models load in `worker_init`, in the worker's main process before it consumes anything; not in
`worker_process_init`, whose handlers must finish within 4 seconds.
"""

import logging
import threading
from pathlib import Path
from typing import Any

from celery import Celery, signals
from kombu import Queue

from jobstate.connections import celery_broker
from jobstate.queues import GPU_QUEUE_PREFIX
from workers.settings import WorkerSettings, get_settings

log = logging.getLogger(__name__)

APP_NAME = "vsteer"


def create_app(settings: WorkerSettings) -> Celery:
    broker, _ = celery_broker(settings.broker)
    app = Celery(APP_NAME, broker=broker, include=["workers.tasks"])
    app.conf.update(
        worker_pool="solo",
        worker_concurrency=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=transport_options(settings),
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(q) for q in settings.queues],
        task_default_queue=settings.queues[0],
        task_serializer="json",
        accept_content=["json"],
        # Outcomes live in job state, not in a Celery result backend.
        task_ignore_result=True,
        worker_send_task_events=False,
    )
    return app


def transport_options(settings: WorkerSettings) -> dict[str, Any]:
    # a Sentinel URL's primary name (`master_name`), then ours
    options: dict[str, Any] = celery_broker(settings.broker)[1]
    options["visibility_timeout"] = float(settings.visibility_timeout_s or 0)
    if settings.redelivery_check_s is not None:
        # kombu scans every `interval`, but only acts on one call in `throttle`: scan on each.
        options |= {"unacked_restore_interval": settings.redelivery_check_s, "unacked_restore_throttle": 1}
    return options


app = create_app(get_settings())

_deps_lock = threading.Lock()
_deps = None
_stop_heartbeat = threading.Event()


def worker_deps():  # type: ignore[no-untyped-def]
    """The job store, storage and model registry of this process, built on first use."""
    global _deps
    with _deps_lock:
        if _deps is None:
            _deps = build_deps(get_settings())
        return _deps


def build_deps(settings: WorkerSettings):  # type: ignore[no-untyped-def]
    # Imported here: a webhook-only worker of the same app never loads torch.
    from jobstate.records import JobRecord, Presigner
    from jobstate.store import JobStore
    from storage.factory import make_storage
    from webhooks.messages import enqueue_job_webhook
    from workers.job_runner import WorkerDeps
    from workers.models import ModelRegistry
    from workers.remote_images import RemoteImages

    kind, storage_settings = settings.storage_kwargs()
    storage = make_storage(kind, **storage_settings)

    def enqueue_webhook(record: JobRecord) -> bool:
        # The webhook body carries the job resource, with URLs as fresh as the API's.
        return enqueue_job_webhook(
            app, record, presign=Presigner(storage.presigned_url, settings.presign_expiry_s, settings.public_base_url)
        )

    return WorkerDeps(
        # A Redis that stops answering fails a call after 10 s (progress is best effort, final states are
        # retried within the state retry budget) instead of holding the job forever.
        store=JobStore.from_url(
            settings.redis_url, broker_url=settings.broker_url, socket_timeout=10, socket_connect_timeout=5
        ),
        storage=storage,
        registry=ModelRegistry.from_settings(settings),
        enqueue_webhook=enqueue_webhook,
        work_dir=settings.work_dir,
        engine_settings=settings,
        remote_images=RemoteImages(allow_private=settings.webhook_allow_private)
        if settings.allow_remote_images
        else None,
        job_time_limit_s=settings.job_time_limit_s,
        max_deliveries=settings.max_deliveries,
        lease_s=settings.worker_lost_after_s,
        storage_retry_budget_s=settings.storage_retry_budget_s,
        state_retry_budget_s=settings.state_retry_budget_s,
    )


def consumed_models(worker) -> list[str]:  # type: ignore[no-untyped-def]
    """Models whose `gpu.<model>` queue this worker consumes (its `-Q`, or the configured queues)."""
    queues = worker.app.amqp.queues
    names = list((queues.consume_from or queues).keys())
    return [n.removeprefix(GPU_QUEUE_PREFIX) for n in names if n.startswith(GPU_QUEUE_PREFIX)]


@signals.worker_init.connect
def load_models(sender=None, **_: object) -> None:  # type: ignore[no-untyped-def]
    """Build the process's dependencies and load every served model before consuming."""
    if sender is None or sender.app.main != APP_NAME:
        return  # another Celery app's worker in this process (signals are process-wide)
    models = consumed_models(sender)
    if not models:
        return
    log.info("loading models %s", ", ".join(models))
    try:
        deps = worker_deps()
        deps.registry.warm(models)
        warm_up_jobs(deps.registry, models, get_settings())
    except Exception as exc:
        # Celery logs and ignores exceptions of signal handlers; a GPU worker that cannot load what it
        # serves must not consume its queue, so it stops here (SystemExit passes through).
        log.critical("cannot load models %s: %s", ", ".join(models), exc, exc_info=True)
        raise SystemExit(f"vsteer worker: cannot load models {', '.join(models)}: {exc}") from exc
    log.info("models loaded: %s", ", ".join(deps.registry.warm_names()))
    from workers.job_runner import worker_identity

    deps.worker_id = worker_identity(sender.hostname)
    _stop_heartbeat.clear()
    settings = get_settings()
    beat = threading.Thread(
        target=_heartbeat, args=(deps, sender.hostname, settings.heartbeat_s, settings.heartbeat_file), daemon=True
    )
    beat.start()


def warm_up_jobs(registry, models: list[str], settings: WorkerSettings) -> None:  # type: ignore[no-untyped-def]
    """One small job per model before consuming, where the fast path's warm-up is on (CUDA by
    default, `VSTEER_WARMUP=1` anywhere), so that the first real job runs at steady-state speed."""
    from workers.engine import warm_up_job
    from workers.models import ModelRegistry

    if not isinstance(registry, ModelRegistry):
        return  # a stand-in engine (tests, benchmarks) has no model to warm
    for name in models:
        if registry.get(name).fast.warm_up:
            log.info("warm-up job for %s took %.1f s", name, warm_up_job(registry, name, settings=settings))


@signals.worker_shutting_down.connect
def hand_back_running_job(**_: object) -> None:
    """Warm shutdown: the running job stops at its next step and returns to the queue (see module doc)."""
    # Imported here: the webhook-only worker of this app never imports torch.
    from workers.job_runner import SHUTDOWN

    SHUTDOWN.set()


@signals.worker_shutdown.connect
def stop_heartbeat(**_: object) -> None:
    _stop_heartbeat.set()


def _heartbeat(deps, hostname: str, every_s: float, beat_file: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    """Until the worker stops: renew the lease of the running job (a job whose lease expires is taken
    back by the reaper), report warm models to job state (GET /v1/models lists them) and touch
    `beat_file`, the liveness signal of an orchestrator (`workers.liveness`). The file is touched
    whether or not Redis answered: a Redis outage is not a reason to restart a worker."""
    from workers.job_runner import renew_lease

    while not _stop_heartbeat.is_set():
        try:
            if renew_lease(deps) is False:
                log.warning("job %s is no longer held by this worker; its run stops at its next step", deps.current_job)
        except Exception:
            log.warning("lease renewal failed", exc_info=True)
        try:
            for model in deps.registry.warm_names():
                deps.store.heartbeat(model, hostname, ttl_s=3 * every_s)
        except Exception:
            log.warning("heartbeat to job state failed", exc_info=True)
        if beat_file is not None:
            try:
                beat_file.touch()
            except OSError:
                log.warning("cannot touch the heartbeat file %s", beat_file, exc_info=True)
        _stop_heartbeat.wait(every_s)


__all__ = ["app", "worker_deps"]
