"""Every error becomes RFC 9457 problem details (`application/problem+json`), here and nowhere else.

Routes and their handlers (`service.handlers`) raise `ProblemError` or let job state's and libraries'
errors through; the exception handlers below turn validation errors into 422 naming the field and the
rule, job state's refusals (over the rate, over the active jobs, a reused Idempotency-Key) into 429 or
422, a body over the limit into 413, an unreachable Redis, storage or broker into 503, and anything
unexpected into a 500 that says nothing of the internals.
"""

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_schemas import FieldError, Problem
from api_schemas.job import rule_field
from api_schemas.problems import ProblemType
from jobstate.errors import IdempotencyConflict, RateLimited, TooManyActiveJobs
from service.settings import Settings
from storage.base import StorageError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "5"
ACTIVE_CAP_RETRY_AFTER_S = 5


class ProblemError(Exception):
    """An error the client should see as problem details."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: ProblemType | None = None,
        field: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(
            type=type_.uri if type_ else "about:blank",
            title=title,
            status=status,
            detail=detail,
            field=field,
            errors=list(errors),
        )
        self.headers = dict(headers or {})


def check_page_limit(limit: int, most: int) -> None:
    """A list route's `limit` above the configured most is a 422 naming the field and the rule."""
    if limit > most:
        too_many = FieldError(
            field="limit", rule="less_than_equal", message=f"`limit` must be at most {most}, got {limit}"
        )
        raise invalid([too_many], title="Invalid request")


def not_found(what: str, ident: str) -> ProblemError:
    """404 for an id that does not exist or belongs to another tenant (the two look the same)."""
    return ProblemError(404, "Not Found", f"no {what} {ident!r}", type_=ProblemType.not_found)


def invalid(errors: Sequence[FieldError], title: str = "Invalid job document") -> ProblemError:
    """422 naming every field and rule; `field` is the first one."""
    first = errors[0]
    detail = "; ".join(f"`{e.field}`: {e.message}" if e.field else e.message for e in errors)
    return ProblemError(422, title, detail, type_=ProblemType.validation, field=first.field or None, errors=errors)


def rate_limited(settings: Settings, retry_after_s: float) -> ProblemError:
    """429 for an API key over its request rate."""
    retry_after = max(1, math.ceil(retry_after_s))
    return ProblemError(
        429,
        "Too Many Requests",
        f"this API key may make {settings.rate_limit_per_s:g} requests per second "
        f"(bursts of {settings.rate_limit_burst}); retry after {retry_after} s",
        type_=ProblemType.rate_limited,
        headers={"Retry-After": str(retry_after)},
    )


JobStateRefusal = RateLimited | TooManyActiveJobs | IdempotencyConflict


def refused(exc: JobStateRefusal, settings: Settings) -> ProblemError:
    """The problem that answers a job-state operation Redis refused for the caller's own reasons."""
    if isinstance(exc, RateLimited):
        return rate_limited(settings, exc.retry_after_s)
    if isinstance(exc, TooManyActiveJobs):
        # 429, not 409: nothing is wrong with this job; the tenant may submit it once others finish.
        return ProblemError(
            429,
            "Too Many Requests",
            f"{exc}; submit again when some of them have finished",
            type_=ProblemType.too_many_active_jobs,
            headers={"Retry-After": str(ACTIVE_CAP_RETRY_AFTER_S)},
        )
    reused = FieldError(
        field="Idempotency-Key",
        rule="idempotency_key_reused",
        message=f"the key was used for job {exc.job_id} with a different body",
    )
    return invalid([reused], title="Idempotency-Key reused")


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in, as soon as it passes the limit (FastAPI lets HTTPException through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")
        self.limit = limit


def problem_response(
    problem: Problem, request: Request | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    if request is not None and problem.instance is None:
        problem = problem.model_copy(update={"instance": request.url.path})
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def field_path(loc: Sequence[Any]) -> str:
    """`("body", "keyframes", 1, "image")` → `keyframes[1].image`."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where, parts = parts[0], parts[1:]
        if where == "header" and parts:
            return str(parts[0])
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).startswith(("function-", "tagged-union", "json-or-python")):
            continue  # pydantic's internal validator names, not fields
        else:
            out += f".{p}" if out else str(p)
    return out


def _validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for e in exc.errors():
        rule = str(e.get("type", "invalid"))
        loc = e.get("loc", ())
        if rule == "json_invalid":
            where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            reason = (e.get("ctx") or {}).get("error", "")
            errors.append(FieldError(field="", rule=rule, message=f"the body is not valid JSON{where}: {reason}"))
            continue
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        field = rule_field(field_path(loc), e.get("ctx"))  # a rule spanning fields names the one to change
        shown = _shown(e.get("input"))
        if shown.removeprefix(", got ") in message:
            shown = ""  # the message already says what it got
        errors.append(FieldError(field=field, rule=rule, message=message + shown))
    return errors or [FieldError(field="", rule="invalid", message="the request is invalid")]


def _shown(value: Any) -> str:
    """`, got <value>` for short scalars; long strings (a data URI) and documents are not echoed."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 80):
        return f", got {value!r}"
    return ""


# The documents a client writes, and what their 422 is titled.
_DOCUMENT_TITLES = {
    ("POST", "/v1/jobs"): "Invalid job document",
    ("POST", "/v1/directions"): "Invalid direction",
    ("POST", "/v1/anchors"): "Invalid anchor set",
    ("POST", "/v1/anchors/{id}/versions"): "Invalid anchor set",
}


def _document_path(path: str) -> str:
    parts = path.rstrip("/").split("/")
    if len(parts) == 5 and parts[:3] == ["", "v1", "anchors"] and parts[4] == "versions":
        parts[3] = "{id}"
    return "/".join(parts)


BeforeClientError = Callable[[Request], Awaitable[None]]


async def _nothing(request: Request) -> None:
    return None


def _client_error_handlers(before: BeforeClientError) -> dict[type[Exception], Any]:
    """Handlers of the errors a client's request causes. `before(request)` runs first and may raise a
    `ProblemError` that is answered instead (a rate limit that was pending, see `service.deps`)."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        try:
            await before(request)
        except ProblemError as instead:
            exc = instead
        return problem_response(exc.problem, request, exc.headers)

    async def on_refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, JobStateRefusal)
        return await on_problem(request, refused(exc, request.app.state.settings))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        try:
            await before(request)
        except ProblemError as instead:
            return problem_response(instead.problem, request, instead.headers)
        errors = _validation_errors(exc)
        title = _DOCUMENT_TITLES.get((request.method, _document_path(request.url.path)), "Invalid request")
        return problem_response(invalid(errors, title).problem, request)

    return {
        ProblemError: on_problem,
        RateLimited: on_refused,
        TooManyActiveJobs: on_refused,
        IdempotencyConflict: on_refused,
        RequestValidationError: on_validation,
    }


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = _TITLES.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    if detail is None and exc.status_code in (404, 405):
        # No route matched (an id with a `/` in it, say): say what was asked for.
        detail = f"nothing answers {request.method} {request.url.path}"
    problem = Problem(title=title, status=exc.status_code, detail=detail)
    if exc.status_code == 413:
        problem = problem.model_copy(update={"type": ProblemType.too_large.uri})
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette's `Allow` names the methods of the first route on the path only; one route per method
        # (GET and DELETE of a job) needs them all.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return problem_response(problem, request, headers)


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on the request's path (each asked of the router as a request)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    what = (
        "storage" if isinstance(exc, StorageError) else "the job queue" if isinstance(exc, BrokerError) else "job state"
    )
    log.warning("%s unavailable on %s %s: %s", what, request.method, request.url.path, exc)
    problem = Problem(
        type=ProblemType.unavailable.uri,
        title="Service Unavailable",
        status=503,
        detail=f"{what} is unreachable; retry later",
    )
    return problem_response(problem, request, {"Retry-After": RETRY_AFTER_S})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex
    log.error("unexpected error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    problem = Problem(
        title="Internal Server Error", status=500, detail=f"an unexpected error occurred (incident {incident})"
    )
    return problem_response(problem, request)


UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    StorageError,
    BrokerError,
)


def install_error_handlers(app: FastAPI, before_client_error: BeforeClientError = _nothing) -> None:
    for exc_type, handler in _client_error_handlers(before_client_error).items():
        app.add_exception_handler(exc_type, handler)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)


class BodyLimitMiddleware:
    """Refuse bodies over the limit: at once from `Content-Length`, else as soon as the stream passes it.

    Uploads (`POST /v1/assets`) get `upload_limit`; every other request `json_limit`.
    """

    def __init__(self, app: ASGIApp, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"].rstrip("/") == "/v1/assets" else self.json_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            problem = Problem(
                type=ProblemType.too_large.uri,
                title="Content Too Large",
                status=413,
                detail=f"the request body of {int(declared)} bytes exceeds the limit of {limit} bytes",
                instance=scope["path"],
            )
            await problem_response(problem, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
