"""Liveness, readiness and Prometheus metrics."""

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from api_schemas import Health
from service.deps import SettingsDep, StorageDep, StoreDep
from service.metrics import render

router = APIRouter(tags=["health"])

READY_CHECK_S = 1.0


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is unreachable."}},
    summary="Readiness: Redis and storage are reachable",
)
async def readyz(store: StoreDep, storage: StorageDep) -> Response:
    # Each check has its own deadline: a dependency that hangs is unavailable, and the probe answers
    # within its orchestrator's timeout instead of after the clients' retries.
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(store.ping(), READY_CHECK_S)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    try:
        await asyncio.wait_for(run_in_threadpool(storage.ping), READY_CHECK_S)
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    health = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(health.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics",
)
async def metrics(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    body = await render(request.app.state.metrics, store, list(settings.models))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
