"""The whole service on real servers, started once per session on free ports and always stopped:
redis-server, moto in server mode as S3, the API under uvicorn, a Celery GPU worker (solo pool, tiny
model on the CPU), the webhook worker, and an HTTP receiver for webhooks."""

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from storage.s3 import S3Storage
from tests.servers import (
    CeleryWorker,
    MotoServer,
    RedisServer,
    UvicornServer,
    free_port,
    spawn,
    start_moto,
    start_redis,
    start_uvicorn,
    wait_for,
)
from vsteer.client import Client

API_KEY = "integration-key"
TENANT = "acme"
BUCKET = "vsteer-integration"
ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_aW50ZWdyYXRpb24tdGVzdC13ZWJob29rLWtleQ=="


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    url: str
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, subject_id: str, timeout_s: float = 30.0) -> list[Received]:
        """The messages about one job (or fit) by `data.id`, once at least one has arrived (the receiver
        serves the whole session, so `arrived` may have been set by another test's message)."""
        deadline = time.monotonic() + timeout_s
        while True:
            mine = [r for r in list(self.received) if json.loads(r.body)["data"]["id"] == subject_id]
            if mine or time.monotonic() >= deadline:
                return mine
            time.sleep(0.1)


@dataclass
class Service:
    url: str
    redis: RedisServer
    s3: MotoServer
    api: UvicornServer
    worker: CeleryWorker
    webhooks: CeleryWorker
    receiver: WebhookReceiver
    logs: Path

    def client(self) -> Client:
        return Client(self.url, API_KEY)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    holder: dict[str, WebhookReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver = holder["receiver"]
            receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            receiver.arrived.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["receiver"] = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, webhook_receiver: WebhookReceiver
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("service")
    logs = root / "logs"
    logs.mkdir()
    stops = []
    try:
        redis = start_redis(root)
        stops.append(redis.stop)
        s3 = start_moto(root)
        stops.append(s3.stop)
        S3Storage(BUCKET, endpoint_url=s3.url, access_key_id="testing", secret_access_key="testing").ensure_bucket()

        common = {
            "VSTEER_ENVIRONMENT": "test",
            "VSTEER_REDIS_URL": redis.url,
            "VSTEER_STORAGE_BACKEND": "s3",
            "VSTEER_STORAGE_S3_BUCKET": BUCKET,
            "VSTEER_STORAGE_S3_ENDPOINT_URL": s3.url,
            "VSTEER_STORAGE_S3_ACCESS_KEY_ID": "testing",
            "VSTEER_STORAGE_S3_SECRET_ACCESS_KEY": "testing",
            "VSTEER_PRESIGN_EXPIRY_S": "600",
            "VSTEER_DEFAULT_MODEL": "tiny",
            "VSTEER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "VSTEER_WEBHOOK_ALLOW_PRIVATE": "true",
            "VSTEER_ALLOW_REMOTE_IMAGES": "true",  # on loopback: allowed by the line above
            "VSTEER_WEBHOOK_BACKOFF_BASE_S": "0.2",
        }
        # The worker's registry finds the session's tiny SVD where it builds it: <cache>/tiny-svd.
        worker_env = {**common, "VSTEER_CACHE_DIR": str(tiny_model_dir.parent), "VSTEER_MODELS": ""}
        worker = start_worker("workers.celery_app", ["gpu.tiny"], logs / "worker.log", worker_env)
        stops.append(worker.stop)
        webhooks = start_worker("webhooks.celery_app", ["webhooks"], logs / "webhooks.log", common, "threads")
        stops.append(webhooks.stop)
        api_env = {
            **common,
            "VSTEER_MODELS": json.dumps(["tiny"]),
            "VSTEER_DEV_API_KEYS": json.dumps({API_KEY: TENANT}),
        }
        api = start_uvicorn(logs / "api.log", env=api_env)
        stops.append(api.stop)
        yield Service(api.url, redis, s3, api, worker, webhooks, webhook_receiver, logs)
    finally:
        for stop in reversed(stops):
            stop()


def start_worker(app: str, queues: list[str], log: Path, env: dict[str, str], pool: str = "solo") -> CeleryWorker:
    """Like `tests.servers.start_celery_worker`, but the process is stopped if it never gets ready."""
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", ",".join(queues),
        "--pool", pool, "--concurrency", "1", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "-n", f"{app}-{free_port()}@%h",
    ]  # fmt: skip
    process = spawn(argv, log, env=env, cwd=ROOT)
    try:
        wait_for(lambda: process.alive() and "ready." in log.read_text(errors="replace"), 120, app, log)
        if not process.alive():
            raise RuntimeError(f"{app} worker exited\n{log.read_text(errors='replace')[-3000:]}")
    except BaseException:
        process.stop()
        raise
    return CeleryWorker(process)
