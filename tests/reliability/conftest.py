"""The reliability suites' harness: real servers on 127.0.0.1 (redis-server, the API under uvicorn,
stand-in or real Celery workers, moto S3 when asked), always stopped, and a place for each figure.

`VSTEER_RELIABILITY_FULL=1` runs the long variants (20 kill trials, 5,000 jobs, a 30 s S3 outage,
1,000 fuzz requests); without it the short ones run. Figures go to `$VSTEER_RELIABILITY_OUT`
(default `tests/reliability/.results/`) as `<suite>.json`, and are printed.
"""

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobstate.store import JobStore
from tests.servers import (
    CeleryWorker,
    Process,
    RedisServer,
    UvicornServer,
    free_port,
    spawn,
    start_redis,
    start_uvicorn,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("VSTEER_RELIABILITY_FULL") == "1"
RESULTS = Path(os.environ.get("VSTEER_RELIABILITY_OUT") or Path(__file__).parent / ".results")
STANDIN_APP = "tests.reliability.standin_worker"
KEY_A, KEY_B = "reliability-key-a", "reliability-key-b"
TENANT_A, TENANT_B = "tenant-a", "tenant-b"
FILES_SECRET = "reliability-files-secret"
# The shortest visibility timeout the worker settings accept (job limit 10 s, no queue wait): a dead
# worker's job is delivered again 11 s after it was taken.
VISIBILITY_S = 11


def full_or(full: Any, short: Any) -> Any:
    return full if FULL else short


def record_figures(suite: str, figures: dict[str, Any]) -> None:
    """Write a suite's figures to `<results>/<suite>.json` and print them."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"suite": suite, "full": FULL, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **figures}
    (RESULTS / f"{suite}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\n[reliability] {suite}: {json.dumps(figures, default=str)}")


def auth(key: str = KEY_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def tiny_png(seed: int = 1, size: tuple[int, int] = (64, 64)) -> bytes:
    import io

    from tests.conftest import make_image

    buf = io.BytesIO()
    make_image(seed, size).save(buf, format="PNG")
    return buf.getvalue()


def standin_job(steps: int = 2, step_s: float = 0.0, **extra: Any) -> dict[str, Any]:
    """A job document for the stand-in engine (see `tests.reliability.standin`)."""
    import base64

    metadata: dict[str, Any] = {"standin_steps": steps, "standin_step_s": step_s}
    metadata.update(extra.pop("metadata", {}))
    return {
        "model": "tiny",
        "image": "data:image/png;base64," + base64.b64encode(tiny_png()).decode(),
        "generation": {"num_frames": 3, "width": 64, "height": 64, "steps": 2},
        "output": {"preview": "none"},
        "metadata": metadata,
        **extra,
    }


def problem(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The problem details of an error response; fails unless it is `application/problem+json`."""
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers.get("content-type", "").startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == response.status_code and body["title"], body
    return body


@dataclass
class Stack:
    """Redis, the API and workers for one test; `stop()` ends every process it started."""

    root: Path
    redis: RedisServer
    api_env: dict[str, str]
    worker_env: dict[str, str]
    api: UvicornServer | None = None
    workers: list[CeleryWorker] = field(default_factory=list)
    _count: int = 0

    @property
    def url(self) -> str:
        assert self.api is not None
        return self.api.url

    @property
    def storage_dir(self) -> Path:
        return Path(self.worker_env["VSTEER_STORAGE_LOCAL_DIR"])

    def store(self) -> JobStore:
        return JobStore.from_url(self.redis.url)

    def client(self, key: str = KEY_A, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(key), timeout=timeout)

    def start_api(self, **env: str) -> UvicornServer:
        self._count += 1
        self.api = start_uvicorn(self.root / f"api{self._count}.log", env={**self.api_env, **env})
        return self.api

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()

    def start_worker(self, app: str = STANDIN_APP, wait: bool = True, **env: str) -> CeleryWorker:
        self._count += 1
        log = self.root / f"worker{self._count}.log"
        argv = [
            sys.executable, "-m", "celery", "-A", app, "worker", "-Q", "gpu.tiny",
            "--pool", "solo", "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "-n", f"w{self._count}-{free_port()}@%h",
        ]  # fmt: skip
        process = spawn(argv, log, env={**self.worker_env, **env}, cwd=ROOT)
        worker = CeleryWorker(process)
        self.workers.append(worker)
        if wait:
            wait_ready(process)
        return worker

    def worker_logs(self) -> str:
        return "\n".join(w.process.log.read_text(errors="replace")[-2000:] for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            stop_quietly(worker.process)
        self.stop_api()
        self.redis.stop()


def wait_ready(process: Process, timeout_s: float = 60.0) -> None:
    def ready() -> bool:
        if not process.alive():
            raise RuntimeError("worker exited")
        return "ready." in process.log.read_text(errors="replace")

    try:
        wait_for(ready, timeout_s, "celery worker", process.log)
    except BaseException:
        stop_quietly(process)
        raise


def stop_quietly(process: Process) -> None:
    try:
        process.stop(timeout_s=20)
    except Exception:
        if process.proc.poll() is None:
            process.proc.kill()


def make_stack(root: Path, appendonly: bool = False, api_env: dict[str, str] | None = None) -> Stack:
    redis = start_redis(root, appendonly=appendonly)
    storage = root / "objects"
    common = {
        "VSTEER_ENVIRONMENT": "test",
        "VSTEER_REDIS_URL": redis.url,
        "VSTEER_STORAGE_BACKEND": "local",
        "VSTEER_STORAGE_LOCAL_DIR": str(storage),
        "VSTEER_FILES_SECRET": FILES_SECRET,
        "VSTEER_DEFAULT_MODEL": "tiny",
        "VSTEER_WEBHOOK_ALLOW_PRIVATE": "false",
        # Leases shorter than the visibility timeout, so that a job redelivered by it may be claimed;
        # `test_worker_kill.py` runs the production defaults instead.
        "VSTEER_HEARTBEAT_S": "2",
        "VSTEER_WORKER_LOST_AFTER_S": "6",
    }
    worker_env = {
        **common,
        "VSTEER_MODELS": "",
        "VSTEER_JOB_TIME_LIMIT_S": "10",
        "VSTEER_MAX_QUEUE_WAIT_S": "0",
        "VSTEER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        "VSTEER_REDELIVERY_CHECK_S": "1",
    }
    api = {
        **common,
        "VSTEER_MODELS": json.dumps(["tiny"]),
        "VSTEER_DEV_API_KEYS": json.dumps({KEY_A: TENANT_A, KEY_B: TENANT_B}),
        "VSTEER_PUBLIC_BASE_URL": "http://127.0.0.1",
        "VSTEER_RATE_LIMIT_PER_S": "0",
        "VSTEER_MAX_ACTIVE_JOBS_PER_TENANT": "0",
        **(api_env or {}),
    }
    return Stack(root, redis, api, worker_env)


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Build stacks inside a test; each one is stopped at the end, passed or failed."""
    stacks: list[Stack] = []

    def build(appendonly: bool = False, api_env: dict[str, str] | None = None) -> Stack:
        stack = make_stack(tmp_path / f"stack{len(stacks)}", appendonly=appendonly, api_env=api_env)
        stacks.append(stack)
        return stack

    try:
        yield build
    finally:
        for stack in stacks:
            stack.stop()


def wait_terminal(store: JobStore, tenant: str, job_ids: list[str], timeout_s: float, what: str = "") -> dict:
    """Every job's final record; fails with the stragglers after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, Any] = {}
    pending = list(job_ids)
    while pending:
        still = []
        for job_id in pending:
            record = store.get(tenant, job_id)
            if record is not None and record.status.is_terminal():
                done[job_id] = record
            else:
                still.append(job_id)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                states = {j: (r.status.value if (r := store.get(tenant, j)) else None) for j in pending[:10]}
                raise AssertionError(f"{len(pending)} jobs not terminal after {timeout_s} s {what}: {states}")
            time.sleep(0.1)
    return done
