"""The FastAPI application: `create_app(settings)`; clients are built in the lifespan and kept on `app.state`.

Run it with:

    uvicorn service.app:create_app --factory --host 0.0.0.0 --port 8000
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from PIL import Image
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from jobstate.connections import async_client
from jobstate.records import Presigner
from jobstate.store import AsyncJobStore
from service.deps import settle_pending_token
from service.errors import BodyLimitMiddleware, install_error_handlers
from service.metrics import Metrics, MetricsMiddleware
from service.queue import JobQueue, make_producer
from service.reaper import Reaper
from service.routes import anchors, assets, comparisons, directions, files, health, jobs, models, playground
from service.settings import Settings, get_settings
from storage.base import Storage
from storage.factory import make_storage

# Room for the multipart envelope around an upload of exactly the limit.
MULTIPART_SLACK = 64 * 1024


def make_redis(settings: Settings, url: str | None = None) -> "aioredis.Redis | aioredis.RedisCluster":
    """The client of `url` (job state's by default; `jobstate.connections` reads the URL)."""
    # Few, quick retries: when Redis is down (connection refused) a request answers 503 in well under a
    # second. A Redis that accepts connections but stops answering (hung, paused, a network partition)
    # costs the socket timeout per try: 503 after ~10 s, not minutes. The API's commands take
    # milliseconds; its one long read, the events stream's, passes its own timeout.
    return async_client(
        url or settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        health_check_interval=30,
    )


def create_app(settings: Settings | None = None, storage: Storage | None = None) -> FastAPI:
    """The API. `storage` replaces the configured backend (tests); otherwise the lifespan builds it."""
    settings = settings or get_settings()
    # Pillow refuses images over twice this and warns over it; the upload check refuses over it.
    Image.MAX_IMAGE_PIXELS = settings.max_image_pixels

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_redis(settings)
        broker = make_redis(settings, settings.broker_url) if settings.broker_url else None
        app.state.store = AsyncJobStore(client, broker)
        app.state.storage = store_objects = storage if storage is not None else _make_storage(settings)
        app.state.queue = JobQueue(make_producer(settings))
        reaper = Reaper(
            app.state.store,
            app.state.queue,
            Presigner(store_objects.presigned_url, settings.presign_expiry_s, settings.public_base_url),
            settings,
            store_objects,
        )
        try:
            async with anyio.create_task_group() as background:
                if settings.reap_every_s > 0:
                    background.start_soon(reaper.run_forever)
                try:
                    yield
                finally:
                    background.cancel_scope.cancel()
        finally:
            app.state.queue.close()
            await app.state.store.aclose()

    app = FastAPI(
        title="vsteer",
        version="1",
        summary="Latent-space steering of Stable Video Diffusion, as a service.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tenants = settings.tenants_by_key_hash()
    app.state.metrics = Metrics()
    app.state.rate_empty_until = {}  # see service.deps.get_submitter
    install_error_handlers(app, before_client_error=settle_pending_token)
    for module in (jobs, comparisons, assets, anchors, directions, models, files, health, playground):
        app.include_router(module.router)
    jobs.document_list_limit(app, settings.list_limit_max)
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=settings.max_json_bytes,
        upload_limit=settings.max_upload_bytes + MULTIPART_SLACK,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:  # outermost, so refusals carry the CORS headers too
        # Browsers send the key in `Authorization` and follow events with `fetch` (an `EventSource`
        # cannot send headers); `Last-Event-ID` lets a page resume a stream.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Prefer", "Last-Event-ID"],
            expose_headers=["Location", "Retry-After", "Idempotency-Key"],
            max_age=600,
        )
    return app


def _make_storage(settings: Settings) -> Storage:
    kind, kwargs = settings.storage_kwargs()
    return make_storage(kind, **{k: v for k, v in kwargs.items() if v is not None})
