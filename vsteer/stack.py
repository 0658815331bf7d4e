"""A local vsteer stack without Docker: redis-server, the API, a GPU worker and the webhook worker.

    vsteer up                      # prints the URL and an API key; Ctrl-C stops everything

or from Python (tests, the demo):

    with start_stack() as stack:
        client = Client(stack.url, stack.api_key)

Every process is a child of this one, on free ports, with its state in a private folder (Redis data,
local storage, logs) that is removed on exit unless it was given. Once all are ready, one that exits is
started again with backoff and logged (`vsteer.supervisor`); the stack stops only when asked (Ctrl-C,
SIGTERM, `stop()`), and a crashed process leaves the state folder as it was. Storage is a local folder unless
`VSTEER_STORAGE_BACKEND=s3` (with `VSTEER_STORAGE_S3_BUCKET` and `VSTEER_STORAGE_S3_ENDPOINT_URL`) is
set, in which case the bucket is created when missing. The worker serves the trained toy model
(`models/toy`; the random-weight tiny one where that folder is missing) unless `VSTEER_DEFAULT_MODEL`
(and `VSTEER_MODELS` with real weights) say otherwise.
"""

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter

from jobstate.queues import CPU_QUEUE, WEBHOOK_QUEUE, queue_for
from vsteer import supervisor
from vsteer.supervisor import Backoff, Child, Supervisor

REPO_ROOT = Path(__file__).resolve().parents[1]
TENANT = "local"
SECOND_TENANT = "local-2"  # `vsteer up --second-key`: to try tenant isolation


class StackError(RuntimeError):
    """A process of the stack did not start, or stopped on its own."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """A running stack: where the API is, the key to call it with, and its processes."""

    url: str
    api_key: str
    tenant: str
    redis_url: str
    state_dir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    other_keys: dict[str, str] = field(default_factory=dict)  # more API keys → their tenants
    supervisor: Supervisor | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def child(self, name: str) -> Child:
        """The process called `name` (`redis`, `api`, `webhooks`, `worker`); its pid changes on a restart."""
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"no process {name!r} in this stack: {[c.name for c in self.children]}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop restarting, then stop the workers first (no new jobs), then the API, then Redis; remove
        private state."""
        if self.supervisor is not None:
            self.supervisor.stop()
        while self.children:
            self.children.pop().stop(timeout_s)
        while self._cleanup:
            self._cleanup.pop()()

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(name: str, argv: list[str], env: Mapping[str, str], logs: Path) -> Child:
    child = Child(name, argv, dict(env), logs / f"{name}.log", cwd=REPO_ROOT)
    child.start()
    return child


def _wait(child: Child, ready: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise StackError(f"{child.name} exited with code {child.returncode}\n{child.tail()}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise StackError(f"{child.name} did not become ready within {timeout_s:g} s\n{child.tail()}")


def check_port_free(host: str, port: int) -> None:
    """StackError when `port` cannot be listened on at `host` (another `vsteer up`, another server):
    the API would fail to bind, and the other server's answers would pass for its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT does not count
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"port {port} on {host} is taken ({exc.strerror}): another `vsteer up` or another server listens "
                "there; stop it or pick another with --port"
            ) from None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


def default_model(env: Mapping[str, str]) -> str:
    """The model a stack serves when none is named: `VSTEER_DEFAULT_MODEL`, else the trained toy model
    when its weights are in the checkout, else the random-weight tiny one."""
    from workers.toy import TOY, toy_available

    return env.get("VSTEER_DEFAULT_MODEL") or (TOY if toy_available() else "tiny")


def _served_models(model: str, worker_env: Mapping[str, str]) -> list[str]:
    """The models the worker serves (and so the only ones the API accepts, so that no job waits for a
    worker that will never come): `model`, comma separated, the first the default. VSTEER_MODELS (a
    JSON object of name → weights for the worker's registry) is checked here to fail early."""
    raw = worker_env.get("VSTEER_MODELS", "").strip()
    if raw:
        specs = json.loads(raw)
        if not isinstance(specs, dict):
            raise StackError("VSTEER_MODELS must be a JSON object of model name → weights for the worker")
    served = list(dict.fromkeys(name.strip() for name in model.split(",") if name.strip()))
    if not served:
        raise StackError(f"--model names no model: {model!r}")
    return served


def _allows_private(env: Mapping[str, str]) -> bool:
    # Parsed as the webhook worker's settings parse it.
    return TypeAdapter(bool).validate_python(env.get("VSTEER_WEBHOOK_ALLOW_PRIVATE") or False)


def _stack_env(base: Mapping[str, str], *, redis_url: str, api_url: str, state_dir: Path, model: str) -> dict[str, str]:
    env = dict(base)
    pythonpath = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "PYTHONUNBUFFERED": "1",
            "VSTEER_ENVIRONMENT": env.get("VSTEER_ENVIRONMENT", "dev"),
            "VSTEER_REDIS_URL": redis_url,
            "VSTEER_PUBLIC_BASE_URL": api_url,
            "VSTEER_DEFAULT_MODEL": model,
            "VSTEER_FILES_SECRET": env.get("VSTEER_FILES_SECRET") or secrets.token_hex(32),
            # Webhook receivers of a local stack are usually on this machine.
            "VSTEER_WEBHOOK_ALLOW_PRIVATE": env.get("VSTEER_WEBHOOK_ALLOW_PRIVATE", "true"),
        }
    )
    if env.get("VSTEER_STORAGE_BACKEND", "local") == "local":
        env["VSTEER_STORAGE_BACKEND"] = "local"
        env.setdefault("VSTEER_STORAGE_LOCAL_DIR", str(state_dir / "storage"))
    env.pop("VSTEER_DEV_API_KEYS", None)
    return env


def _ensure_bucket(env: Mapping[str, str]) -> None:
    if env.get("VSTEER_STORAGE_BACKEND") != "s3":
        return
    from storage.s3 import S3Storage

    bucket = env.get("VSTEER_STORAGE_S3_BUCKET")
    if not bucket:
        raise StackError("VSTEER_STORAGE_BACKEND=s3 needs VSTEER_STORAGE_S3_BUCKET")
    S3Storage(
        bucket,
        endpoint_url=env.get("VSTEER_STORAGE_S3_ENDPOINT_URL"),
        region=env.get("VSTEER_STORAGE_S3_REGION", "us-east-1"),
        access_key_id=env.get("VSTEER_STORAGE_S3_ACCESS_KEY_ID"),
        secret_access_key=env.get("VSTEER_STORAGE_S3_SECRET_ACCESS_KEY"),
    ).ensure_bucket(int(env.get("VSTEER_RETENTION_DAYS") or 30))


def start_stack(
    *,
    port: int | None = None,
    model: str | None = None,
    state_dir: Path | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    webhooks: bool = True,
    ready_timeout_s: float = 180.0,
    backoff: Backoff | None = None,
    host: str = "127.0.0.1",
    second_tenant: bool = False,
) -> Stack:
    """Start redis-server, the API, a GPU worker and (unless `webhooks=False`) the webhook worker.

    `env` (default: this process's environment) configures every process; `model` names the models
    the worker loads and serves, comma separated, the first the default (`VSTEER_DEFAULT_MODEL`, else
    `default_model()`); the API listens on `host`, and with `second_tenant` a second key for another tenant is
    made. Returns once all are ready; use the
    result as a context manager, or call `stop()`. A process that does not get ready fails the start;
    once all are ready, one that exits is started again after `backoff` (default `Backoff()`: 1 s
    doubling to 30 s) until `stop()`.
    """
    # 1. a private folder and free ports
    base_env = dict(os.environ if env is None else env)
    served = _served_models(model or default_model(base_env), base_env)
    model = served[0]
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise StackError("redis-server is not on PATH (Debian/Ubuntu: apt-get install redis-server)")
    if port is not None:
        check_port_free(host, port)
    owned = state_dir is None
    root = Path(tempfile.mkdtemp(prefix="vsteer-stack-")) if state_dir is None else Path(state_dir)
    logs = root / "logs"
    (root / "redis").mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    redis_port, api_port = free_port(), port or free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    api_url = f"http://{_reachable(host)}:{api_port}"
    key = api_key or "vs_" + secrets.token_urlsafe(24)
    stack_env = _stack_env(base_env, redis_url=redis_url, api_url=api_url, state_dir=root, model=model)
    stack = Stack(api_url, key, TENANT, redis_url, root, stack_env)
    if second_tenant:
        stack.other_keys["vs_" + secrets.token_urlsafe(24)] = SECOND_TENANT
    if owned:
        stack._cleanup.append(lambda: shutil.rmtree(root, ignore_errors=True))

    try:
        # 2. Redis, private, with an append-only file (fsync every second, as docker-compose's): a
        #    redis-server that crashed and is started again finds its jobs, queues and assets, and so
        #    does a later start on a given state folder. A temporary folder is removed at stop.
        redis = _spawn(
            "redis",
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(root / "redis"),
             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "yes"],
            stack_env,
            logs,
        )  # fmt: skip
        stack.children.append(redis)
        _wait(redis, lambda: _port_open(redis_port), 15)
        _ensure_bucket(stack_env)

        # 3. the GPU worker: it loads the model before consuming, so it is ready when it says so
        worker_env = {**stack_env, "VSTEER_WORKER_MODELS": ",".join(served)}
        worker = _spawn(
            "worker",
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool", "solo",
             "--concurrency", "1", "-Q", ",".join(map(queue_for, served)), "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "-n", f"gpu-{model}@%h"],
            worker_env,
            logs,
        )  # fmt: skip
        stack.children.append(worker)

        # 4. the API: it reads VSTEER_MODELS as the list of model names
        api_env = {
            **stack_env,
            "VSTEER_MODELS": json.dumps(served),
            "VSTEER_DEV_API_KEYS": json.dumps({key: TENANT, **stack.other_keys}),
        }
        api = _spawn(
            "api",
            [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host", host,
             "--port", str(api_port), "--log-level", "info"],
            api_env,
            logs,
        )  # fmt: skip
        stack.children.insert(1, api)

        # 5. the CPU worker (no torch): webhooks and comparisons' side-by-sides
        if webhooks:
            hooks = _spawn(
                "webhooks",
                [sys.executable, "-m", "celery", "-A", "workers.cpu_app", "worker",
                 "-Q", f"{WEBHOOK_QUEUE},{CPU_QUEUE}", "--pool", "threads", "--concurrency", "4",
                 "--loglevel", "INFO", "--without-gossip", "--without-mingle", "-n", "webhooks@%h"],
                stack_env,
                logs,
            )  # fmt: skip
            stack.children.insert(2, hooks)
            _wait(hooks, lambda: "ready." in hooks.tail(100_000), 60)

        _wait(api, lambda: _http_ok(f"{api_url}/healthz"), 60)
        _wait(worker, lambda: "ready." in worker.tail(1_000_000), ready_timeout_s)

        # 6. from now on a process that exits is started again, until stop()
        stack.supervisor = Supervisor(stack.children, backoff or Backoff())
        stack.supervisor.start()
    except BaseException:
        stack.stop()
        raise
    return stack


@contextmanager
def running_stack(**kwargs: Any) -> Iterator[Stack]:
    """`start_stack(**kwargs)` as a context manager that always stops it."""
    stack = start_stack(**kwargs)
    try:
        yield stack
    finally:
        stack.stop()


def _reachable(host: str) -> str:
    """The address to call an API that listens on `host` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else (f"[{host}]" if ":" in host else host)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up_command(
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    model: Annotated[
        str | None,
        typer.Option(
            help="Models the worker serves, comma separated, the first the default (VSTEER_DEFAULT_MODEL, else "
            "toy, or tiny without the toy weights); several let comparisons run here."
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help=(
                "Keep Redis data (append-only file), storage and the last start's logs here; a later start on "
                "the same folder finds its jobs and assets again (a temporary folder, removed at stop, if unset)."
            )
        ),
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="API key to accept (a random one if unset).")] = None,
    host: Annotated[
        str, typer.Option(help="Address the API listens on (0.0.0.0: every interface; the default: this machine only).")
    ] = "127.0.0.1",
    second_key: Annotated[
        bool, typer.Option("--second-key", help="Also make a key for a second tenant, to try tenant isolation.")
    ] = False,
) -> None:
    """Run the whole service locally without Docker: Redis, the API, a GPU worker, the webhook worker."""
    typer.echo("starting redis-server, the API, the worker (loading the model) and the webhook worker…")
    try:
        stack = start_stack(
            port=port, model=model, state_dir=state_dir, api_key=api_key, host=host, second_tenant=second_key
        )
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"vsteer is up at {stack.url}")
    typer.echo(f"  API key:  {stack.api_key}   (tenant {stack.tenant})")
    for other, tenant in stack.other_keys.items():
        typer.echo(f"  API key:  {other}   (tenant {tenant}: sees none of the other's jobs and assets)")
    typer.echo(f"  API docs: {stack.url}/docs   (OpenAPI: {stack.url}/openapi.json)")
    typer.echo(f"  storage:  {stack.env.get('VSTEER_STORAGE_BACKEND')}")
    typer.echo(f"  logs:     {stack.state_dir / 'logs'}")
    if "VSTEER_WEBHOOK_SECRET" not in stack.env:
        typer.echo("  webhooks: signed with the development secret (webhooks.settings.DEV_WEBHOOK_SECRET); ", nl=False)
        typer.echo("private and loopback receivers allowed" if _allows_private(stack.env) else "public receivers only")
    typer.echo(f'  try:      curl -H "Authorization: Bearer {stack.api_key}" {stack.url}/v1/models')
    typer.echo("  restarts: a process that exits is started again (after 1 s, doubling to 30 s), logged here")
    typer.echo("Ctrl-C stops everything.")
    _echo_restarts()
    # A process manager stops with SIGTERM: take the same orderly way out as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("\nstopping…")
    finally:
        # A second Ctrl-C or SIGTERM while the children stop (a process manager and `timeout` both
        # send one) must not cut the stop short and leave them running: each child's stop has its
        # own time limit, after which it is killed.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


def _echo_restarts() -> None:
    """Print the supervisor's lines (a process exited, started again) on stderr, with the time."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger(supervisor.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
