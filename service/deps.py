"""What routes receive by injection: the caller's tenant, the job store, storage, the queue, settings.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop that
cost more than the lookup itself on every request.
"""

import hashlib
import math
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobstate.store import AsyncJobStore
from service.errors import ProblemError
from service.queue import JobQueue
from service.settings import Settings
from storage.base import Storage

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> AsyncJobStore:
    store: AsyncJobStore = request.app.state.store
    return store


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


async def get_tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The tenant of the caller's API key; keys are compared by their SHA-256, never stored in clear.

    Every authenticated request takes a token from its key's bucket: over the rate it answers 429.
    """
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ProblemError(
            401,
            "Unauthorized",
            "an API key is required: `Authorization: Bearer <key>`",
            type_="unauthorized",
            headers=challenge,
        )
    digest = hashlib.sha256(credentials.credentials.encode()).hexdigest()
    tenant: str | None = request.app.state.tenants.get(digest)
    if tenant is None:
        raise ProblemError(401, "Unauthorized", "the API key is not valid", type_="unauthorized", headers=challenge)
    await check_rate(request, digest)
    return tenant


async def check_rate(request: Request, key_digest: str) -> None:
    """Raise 429 with `Retry-After` when the key has used up its requests for now."""
    settings: Settings = request.app.state.settings
    if settings.rate_limit_per_s <= 0:
        return
    store: AsyncJobStore = request.app.state.store
    decision = await store.take_token(key_digest, settings.rate_limit_per_s, settings.rate_limit_burst)
    if not decision.allowed:
        retry_after = max(1, math.ceil(decision.retry_after_s))
        raise ProblemError(
            429,
            "Too Many Requests",
            f"this API key may make {settings.rate_limit_per_s:g} requests per second "
            f"(bursts of {settings.rate_limit_burst}); retry after {retry_after} s",
            type_="rate-limited",
            headers={"Retry-After": str(retry_after)},
        )


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[AsyncJobStore, Depends(get_store)]
StorageDep = Annotated[Storage, Depends(get_storage)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
Tenant = Annotated[str, Depends(get_tenant)]
