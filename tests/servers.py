"""Real servers for tests, started on free ports: plain functions, so any conftest can wrap them.

Each `start_*` returns a small handle with the address and a `stop()`; a server that does not come
up in time raises with the tail of its log.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout_s} s\n{tail}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Process:
    """A child process with its log file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)

    def alive(self) -> bool:
        return self.proc.poll() is None


def spawn(
    argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Process:
    """Start `argv` with stdout and stderr into `log`; `env` is added to the current environment."""
    full_env = {**os.environ, **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    return Process(proc, log)


@dataclass
class RedisServer:
    url: str
    host: str
    port: int
    data_dir: Path
    process: Process = field(repr=False)

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        """Start it again on the same port and data dir (after `stop`), e.g. to test an outage."""
        self.process = _spawn_redis(self.port, self.data_dir)
        wait_for(lambda: port_open(self.host, self.port), 10, "redis-server", self.process.log)


def _spawn_redis(port: int, data_dir: Path) -> Process:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    argv = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "no",
    ]  # fmt: skip
    return spawn(argv, data_dir / "redis.log")


def start_redis(tmp_path: Path) -> RedisServer:
    """A private redis-server on a free port, data in `tmp_path/redis`."""
    data_dir = tmp_path / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = _spawn_redis(port, data_dir)
    wait_for(lambda: port_open("127.0.0.1", port), 10, "redis-server", process.log)
    return RedisServer(f"redis://127.0.0.1:{port}/0", "127.0.0.1", port, data_dir, process)


@dataclass
class CeleryWorker:
    process: Process

    def stop(self) -> None:
        self.process.stop()


def start_celery_worker(
    app: str,
    queues: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    pool: str = "solo",
    ready_timeout_s: float = 30.0,
) -> CeleryWorker:
    """`celery -A <app> worker -Q <queues>`; returns once the worker logs that it is ready."""
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "-Q", ",".join(queues), "--pool", pool, "--concurrency", "1",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"test-{os.getpid()}-{free_port()}@%h",
    ]  # fmt: skip
    process = spawn(argv, log, env=env, cwd=Path(__file__).resolve().parents[1])
    wait_for(lambda: "ready." in log.read_text(errors="replace"), ready_timeout_s, "celery worker", log)
    if not process.alive():
        raise RuntimeError(f"celery worker exited\n{log.read_text(errors='replace')[-3000:]}")
    return CeleryWorker(process)
