"""What routes receive by injection: the caller's tenant, the job store, storage, the queue, settings.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop that
cost more than the lookup itself on every request.
"""

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import redis.exceptions
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api_schemas.problems import ProblemType
from jobstate.operations import RateLimit
from jobstate.store import AsyncJobStore
from service.errors import ProblemError, rate_limited
from service.queue import JobQueue
from service.settings import Settings
from storage.base import Storage

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


def app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency answering `app.state.<name>`; its type is the one its `Annotated` alias declares."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant of the API key, and the key's SHA-256 (its rate-limit bucket)."""

    tenant: str
    key_digest: str


async def get_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The caller of an API key; keys are compared by their SHA-256, never stored in clear."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ProblemError(
            401,
            "Unauthorized",
            "an API key is required: `Authorization: Bearer <key>`",
            type_=ProblemType.unauthorized,
            headers=challenge,
        )
    digest = hashlib.sha256(credentials.credentials.encode()).hexdigest()
    tenant: str | None = request.app.state.tenants.get(digest)
    if tenant is None:
        raise ProblemError(
            401, "Unauthorized", "the API key is not valid", type_=ProblemType.unauthorized, headers=challenge
        )
    return Caller(tenant, digest)


async def get_tenant(request: Request, caller: Annotated[Caller, Depends(get_caller)]) -> str:
    """The caller's tenant. Every authenticated request takes a token from its key's bucket: over the
    rate it answers 429."""
    await check_rate(request, caller.key_digest)
    return caller.tenant


async def get_submitter(request: Request, caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    """The caller of `POST /v1/jobs`, whose create script takes the rate-limit token in the same round
    trip that records the job (`submission_rate_limit`). Until it has, the token is pending: an error
    answered before that (an invalid document) takes it instead (`settle_pending_token`), so every
    request still pays one token.

    A key this process found empty pays up front, as on any other route, so that a limited client is
    refused before its document is checked (which may decode images) and not after."""
    until = _empty_until(request).get(caller.key_digest)
    if until is not None and time.monotonic() < until:
        await check_rate(request, caller.key_digest)
        request.state.token_paid = True
        return caller
    request.state.pending_token = caller.key_digest
    return caller


def _empty_until(request: Request) -> dict[str, float]:
    """Key hash → monotonic time until which its bucket was last seen empty (this process only)."""
    empty: dict[str, float] = request.app.state.rate_empty_until
    return empty


def remember_empty(request: Request, key_digest: str, retry_after_s: float) -> None:
    _empty_until(request)[key_digest] = time.monotonic() + retry_after_s


def submission_rate_limit(request: Request, settings: Settings, key_digest: str) -> RateLimit | None:
    """The bucket the create script takes a submission's token from; None when it is paid already."""
    return None if getattr(request.state, "token_paid", False) else rate_limit(settings, key_digest)


def rate_limit(settings: Settings, key_digest: str) -> RateLimit | None:
    """The key's bucket, or None where rate limiting is off."""
    if settings.rate_limit_per_s <= 0:
        return None
    return RateLimit(key_digest, settings.rate_limit_per_s, settings.rate_limit_burst)


async def check_rate(request: Request, key_digest: str) -> None:
    """Raise 429 with `Retry-After` when the key has used up its requests for now."""
    settings: Settings = request.app.state.settings
    bucket = rate_limit(settings, key_digest)
    if bucket is None:
        return
    store: AsyncJobStore = request.app.state.store
    # the bucket lives in the key's tenant's shard, where the create script also takes from it
    tenant = request.app.state.tenants.get(key_digest, "")
    decision = await store.take_token(bucket.subject, bucket.rate_per_s, bucket.burst, tenant=tenant)
    if not decision.allowed:
        remember_empty(request, key_digest, decision.retry_after_s)
        raise rate_limited(settings, decision.retry_after_s)


def token_taken(request: Request) -> None:
    """The request's token was taken (by the create script): nothing is pending any more."""
    request.state.pending_token = None


async def settle_pending_token(request: Request) -> None:
    """Take the token a request left pending (see `get_submitter`); raises 429 when there is none."""
    digest = getattr(request.state, "pending_token", None)
    if digest is None:
        return
    token_taken(request)
    try:
        await check_rate(request, digest)
    except redis.exceptions.RedisError as exc:
        # The answer under way (an invalid document) stands; a Redis outage shows on the next request.
        log.warning("rate limit not settled: %s", exc)


SettingsDep = Annotated[Settings, Depends(app_state("settings"))]
StoreDep = Annotated[AsyncJobStore, Depends(app_state("store"))]
StorageDep = Annotated[Storage, Depends(app_state("storage"))]
QueueDep = Annotated[JobQueue, Depends(app_state("queue"))]
Tenant = Annotated[str, Depends(get_tenant)]
Submitter = Annotated[Caller, Depends(get_submitter)]
