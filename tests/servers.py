"""Real servers for tests, started on free ports: plain functions, so any conftest can wrap them.

Each `start_*` returns a small handle with the address and a `stop()`; a server that does not come
up in time raises with the tail of its log.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Process:
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
    appendonly: bool = False

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        """Start it again on the same port and data dir (after `stop`), e.g. to test an outage."""
        self.process = _spawn_redis(self.port, self.data_dir, self.appendonly)
        wait_for(lambda: port_open(self.host, self.port), 10, "redis-server", self.process.log)


def _spawn_redis(port: int, data_dir: Path, appendonly: bool = False) -> Process:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    argv = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "always",
        "--protected-mode", "no",
    ]  # fmt: skip
    return spawn(argv, data_dir / "redis.log")


def start_redis(tmp_path: Path, appendonly: bool = False) -> RedisServer:
    """A private redis-server on a free port, data in `tmp_path/redis`; `appendonly` turns on the AOF
    (fsync on every write), so that a restart keeps everything."""
    data_dir = tmp_path / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = _spawn_redis(port, data_dir, appendonly)
    wait_for(lambda: port_open("127.0.0.1", port), 10, "redis-server", process.log)
    return RedisServer(f"redis://127.0.0.1:{port}/0", "127.0.0.1", port, data_dir, process, appendonly)


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


@dataclass
class ThreadedUvicorn:
    url: str
    server: Any = field(repr=False)
    thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve_in_thread(app: Any, host: str = "127.0.0.1") -> ThreadedUvicorn:
    """Serve an ASGI app with a real uvicorn (lifespan included) on a free port, in a thread."""
    import uvicorn

    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: bool(server.started), 10, "uvicorn")
    return ThreadedUvicorn(f"http://{host}:{port}", server, thread)


@dataclass
class MotoServer:
    """moto in server mode: a real S3 HTTP endpoint (any access key is accepted)."""

    url: str
    port: int
    process: Process = field(repr=False)

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        """Start it again on the same port (state is lost), e.g. after `stop` to test an outage."""
        self.process = _spawn_moto(self.port, self.process.log)
        wait_for(lambda: port_open("127.0.0.1", self.port), 20, "moto_server", self.process.log)


def _spawn_moto(port: int, log: Path) -> Process:
    return spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)


def start_moto(tmp_path: Path) -> MotoServer:
    """`moto_server` on a free port as its own process, log in `tmp_path/moto.log`."""
    port = free_port()
    process = _spawn_moto(port, tmp_path / "moto.log")
    wait_for(lambda: port_open("127.0.0.1", port), 20, "moto_server", process.log)
    return MotoServer(f"http://127.0.0.1:{port}", port, process)


@dataclass
class UvicornServer:
    """The API under uvicorn, as its own process."""

    url: str
    process: Process = field(repr=False)

    def stop(self) -> None:
        self.process.stop()


def start_uvicorn(
    log: Path,
    env: Mapping[str, str] | None = None,
    app: str = "service.app:create_app",
    factory: bool = True,
    ready_timeout_s: float = 30.0,
) -> UvicornServer:
    """`uvicorn <app>` on a free port; returns once `GET /healthz` answers 200."""
    import urllib.request

    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    if factory:
        argv.append("--factory")
    process = spawn(argv, log, env=env, cwd=Path(__file__).resolve().parents[1])
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not process.alive():
            raise RuntimeError("uvicorn exited")
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return bool(response.status == 200)

    try:
        wait_for(healthy, ready_timeout_s, "uvicorn", log)
    except BaseException:
        process.stop()
        raise
    if not process.alive():
        raise RuntimeError(f"uvicorn exited\n{log.read_text(errors='replace')[-3000:]}")
    return UvicornServer(url, process)


@dataclass
class WebhookReceiver:
    """An HTTP receiver on 127.0.0.1 that answers 500 to the first `failures` POSTs, then 204.

    `requests` holds `(headers (lowercased), body, arrival time)`; `delivered` is set on the first 2xx.
    """

    url: str
    failures: int
    requests: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    delivered: threading.Event = field(default_factory=threading.Event)
    server: Any = field(default=None, repr=False)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_webhook_receiver(failures: int = 0, path: str = "/hooks/vsteer") -> WebhookReceiver:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    receiver = WebhookReceiver(url="", failures=failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
            ok = len(receiver.requests) > receiver.failures
            self.send_response(204 if ok else 500)
            self.end_headers()
            if ok:
                receiver.delivered.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.server = server
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    return receiver
