"""Processes of a benchmark stack on loopback: redis-server, the API (uvicorn), Celery workers.

`vsteer.stack.start_stack` runs the product's own local stack (one tiny-model worker); the service
benchmarks that need other shapes (several API processes, simulated workers, no worker) build theirs
here from the same commands. Everything binds 127.0.0.1 on free ports and lives in one folder.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO_ROOT
from vsteer.stack import free_port

TENANT = "bench"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout_s)


@dataclass
class BenchStack:
    """A folder, a Redis, an API key, and the processes started so far (stopped in reverse)."""

    root: Path
    env: dict[str, str]
    api_key: str
    redis_url: str = ""
    api_url: str = ""
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env or self.env, cwd=REPO_ROOT, start_new_session=True
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def wait(self, proc: Proc, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}\n{proc.tail()}")
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{proc.name} not ready within {timeout_s} s\n{proc.tail()}")

    def stop(self) -> None:
        while self.procs:
            self.procs.pop().stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "BenchStack":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def new_stack(root: Path, models: list[str]) -> BenchStack:
    """Environment for every process: local storage under `root`, the given model names."""
    key = "vs_" + secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        "PYTHONUNBUFFERED": "1",
        "VSTEER_ENVIRONMENT": "dev",
        "VSTEER_STORAGE_BACKEND": "local",
        "VSTEER_STORAGE_LOCAL_DIR": str(root / "storage"),
        "VSTEER_FILES_SECRET": secrets.token_hex(32),
        "VSTEER_DEFAULT_MODEL": models[0],
        "VSTEER_MODELS": json.dumps(models),
        "VSTEER_DEV_API_KEYS": json.dumps({key: TENANT}),
        "VSTEER_PREFER_WAIT_MAX_S": "600",
        # Capacity is the question here, not a tenant's fair share.
        "VSTEER_RATE_LIMIT_PER_S": "0",
        "VSTEER_MAX_ACTIVE_JOBS_PER_TENANT": "0",
    }
    return BenchStack(root, env, key)


def start_redis(stack: BenchStack) -> None:
    port = free_port()
    (stack.root / "redis").mkdir(parents=True, exist_ok=True)
    argv = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(stack.root / "redis"), "--save", "", "--appendonly", "no"]  # fmt: skip
    proc = stack.spawn("redis", argv)
    stack.redis_url = f"redis://127.0.0.1:{port}/0"
    stack.env["VSTEER_REDIS_URL"] = stack.redis_url
    import redis

    stack.wait(proc, lambda: bool(redis.Redis.from_url(stack.redis_url).ping()), 15)


def start_api(stack: BenchStack, processes: int = 1) -> Proc:
    port = free_port()
    stack.api_url = f"http://127.0.0.1:{port}"
    stack.env["VSTEER_PUBLIC_BASE_URL"] = stack.api_url
    argv = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log", "--workers", str(processes)]  # fmt: skip
    proc = stack.spawn("api", argv)

    def healthy() -> bool:
        with urllib.request.urlopen(f"{stack.api_url}/healthz", timeout=1) as response:
            return bool(response.status == 200)

    stack.wait(proc, healthy, 60)
    return proc


def start_worker(
    stack: BenchStack, name: str, queues: list[str], app: str = "workers.celery_app", env: dict[str, str] | None = None
) -> Proc:
    """A solo-pool Celery worker, as production runs one per GPU; returns once it is consuming."""
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "solo", "--concurrency", "1",
            "-Q", ",".join(queues), "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"{name}@%h"]  # fmt: skip
    # The API's VSTEER_MODELS is a list of names; a worker's is a JSON object of specs (none here).
    worker_env = {**stack.env, "VSTEER_MODELS": "", "VSTEER_DEFAULT_MODEL": "tiny", **(env or {})}
    proc = stack.spawn(name, argv, worker_env)
    stack.wait(proc, lambda: "ready." in proc.tail(1_000_000), 180)
    return proc
