"""Jobs: submit, read, list, cancel, delete, follow (server-sent events), and fetch result files."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api_schemas import FieldError, JobList, JobRequest, JobResource, JobStatus
from api_schemas.problems import ProblemType
from jobstate.records import JOB_ID_PATTERN
from service.deps import Submitter, Tenant
from service.errors import ProblemError, invalid
from service.handlers.jobs import JobHandlerDep
from service.routes.common import model_response, problems

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="Job id, `job_...`.", max_length=64)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and body → the same job; same key, other body → 422.",
    ),
]
Prefer = Annotated[str | None, Header(description="`wait=N`: hold the answer up to N seconds for the job to finish.")]


async def json_document(request: Request) -> None:
    """A job document is JSON: an empty body is a 422 naming the field a job cannot go without, and a
    body of another media type (or of none declared) a 415 that says so."""
    if not await request.body():
        empty = FieldError(
            field="image", rule="missing", message="the body is empty: a job needs `image` or `keyframes`"
        )
        raise invalid([empty])
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        message = f"a job document is sent as `Content-Type: application/json`, got `{media or 'none'}`"
        raise ProblemError(
            415,
            "Unsupported Media Type",
            message,
            type_=ProblemType.unsupported_media,
            field="content-type",
            errors=[FieldError(field="content-type", rule="media_type", message=message)],
        )


JsonDocument = Annotated[None, Depends(json_document)]


@router.post(
    "",
    status_code=202,
    response_model=JobResource,
    responses={
        200: {"model": JobResource, "description": "Finished within `Prefer: wait`."},
        **problems(400, 401, 413, 415, 422, 429, 503),
    },
    summary="Submit a job",
)
async def submit_job(
    document: JobRequest,
    caller: Submitter,
    _json: JsonDocument,
    request: Request,
    jobs: JobHandlerDep,
    idempotency_key: IdempotencyKey = None,
    prefer: Prefer = None,
) -> Response:
    answer = await jobs.submit(document, caller, request, idempotency_key, prefer)
    return model_response(answer.job, answer.status_code, answer.headers)


@router.get("/{job_id}", response_model=JobResource, responses=problems(401, 404, 422, 503), summary="Get a job")
async def get_job(job_id: JobId, tenant: Tenant, jobs: JobHandlerDep) -> Response:
    return model_response(await jobs.get(tenant, job_id))


@router.get("", response_model=JobList, responses=problems(401, 422, 503), summary="List jobs, newest first")
async def list_jobs(
    tenant: Tenant,
    jobs: JobHandlerDep,
    cursor: Annotated[
        str | None, Query(pattern=JOB_ID_PATTERN, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, description="Jobs per page, at most `VSTEER_LIST_LIMIT_MAX` (100 by default).")
    ] = 20,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
) -> JobList:
    return await jobs.page(tenant, cursor, limit, status)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Deleted: the record and its result files are gone; the id is 404 from now on."},
        **problems(401, 404, 409, 422, 503),
    },
    summary="Delete a finished job and its result files (409 while it is queued or running: cancel it first)",
)
async def delete_job(job_id: JobId, tenant: Tenant, jobs: JobHandlerDep) -> Response:
    await jobs.delete(tenant, job_id)
    return Response(status_code=204)


@router.post(
    "/{job_id}/cancel",
    response_model=JobResource,
    responses={
        202: {"model": JobResource, "description": "Cancel requested; the worker stops within a step."},
        **problems(401, 404, 409, 422, 503),
    },
    summary="Cancel a queued or running job",
)
async def cancel_job(job_id: JobId, tenant: Tenant, jobs: JobHandlerDep) -> Response:
    answer = await jobs.cancel(tenant, job_id)
    return model_response(answer.job, answer.status_code, answer.headers)


@router.get(
    "/{job_id}/events",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`job` events (the whole resource: first, and on every status change), "
            "`progress` events and, while denoising, `preview` events (a `LivePreview`: a small JPEG strip "
            "of the denoised estimate, without an event `id`); the stream ends after a terminal status.",
        },
        **problems(401, 404, 422, 503),
    },
    response_class=StreamingResponse,
    summary="Follow a job (server-sent events)",
)
async def job_events(
    job_id: JobId,
    tenant: Tenant,
    jobs: JobHandlerDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=200,
            description="The `id` of the last event received, to resume a stream without its repeat.",
        ),
    ] = None,
) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    events = await jobs.follow(tenant, job_id, last_event_id)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


@router.get(
    "/{job_id}/result/{name:path}",
    status_code=307,
    response_class=RedirectResponse,
    responses={307: {"description": "Redirect to a fresh presigned URL."}, **problems(401, 404, 422, 503)},
    summary="Download one result file (`video`, `poster`, `preview`, `manifest`, `frames`, `clips/<k>`)",
)
async def job_result_file(job_id: JobId, name: str, tenant: Tenant, jobs: JobHandlerDep) -> RedirectResponse:
    return RedirectResponse(await jobs.result_url(tenant, job_id, name), status_code=307)


LISTS = ("/v1/jobs", "/v1/anchors", "/v1/assets")


def document_list_limit(app: FastAPI, most: int) -> None:
    """Document `limit` of the list routes (`GET /v1/jobs`, `/v1/anchors`, `/v1/assets`) with this deployment's
    maximum, which their handlers enforce (a bound fixed in the route would say what the code allows,
    not what the deployment does)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            paths = build()["paths"]
            for path in LISTS:
                for parameter in paths[path]["get"]["parameters"]:
                    if parameter["name"] == "limit":
                        parameter["schema"]["maximum"] = most
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["document_list_limit", "router"]
