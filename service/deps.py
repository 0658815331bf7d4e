"""What routes receive by injection: the caller's tenant, the job store, storage, the queue, settings."""

import hashlib
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobstate.store import AsyncJobStore
from service.errors import ProblemError
from service.queue import JobQueue
from service.settings import Settings
from storage.base import Storage

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> AsyncJobStore:
    store: AsyncJobStore = request.app.state.store
    return store


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


def get_tenant(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The tenant of the caller's API key; keys are compared by their SHA-256, never stored in clear."""
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
    return tenant


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[AsyncJobStore, Depends(get_store)]
StorageDep = Annotated[Storage, Depends(get_storage)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
Tenant = Annotated[str, Depends(get_tenant)]
