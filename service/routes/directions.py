"""Directions: vectors stored once (uploaded, or fitted on the tenant's images by a fit that runs on the
model's GPU queue) and cited by jobs as `{"id": "dir_..."}`."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from api_schemas.directions import (
    DIRECTION_CURSOR_PATTERN,
    DirectionCreate,
    DirectionFitList,
    DirectionFitRequest,
    DirectionFitResource,
    DirectionList,
    DirectionResource,
)
from jobstate.records import JOB_ID_PATTERN
from service.deps import Tenant
from service.handlers.directions import DirectionHandlerDep
from service.routes.common import model_response, problems

router = APIRouter(prefix="/v1/directions", tags=["directions"])

DirectionId = Annotated[str, Path(max_length=80, description="Direction id, `dir_...`.")]
FitId = Annotated[str, Path(max_length=64, description="Fit id, `job_...`.")]

_UPLOAD = {
    "type": "object",
    "required": ["file", "model"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "A safetensors file: one F32 or F64 tensor."},
        "model": {"type": "string"},
        "space": {"type": "string", "enum": ["embedding", "latent"], "default": "embedding"},
        "name": {"type": "string"},
    },
}


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A request model's JSON schema written inline in the route, its nested models cited from the
    document's components (where the job document's models already put them: `Webhook`, ...)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


@router.post(
    "",
    status_code=201,
    response_model=DirectionResource,
    responses={
        202: {
            "model": DirectionFitResource,
            "description": "A fit (`method`) was queued on the model's GPU queue; follow it at `Location`.",
        },
        **problems(400, 401, 413, 422, 503),
    },
    summary="Store a direction made elsewhere (a JSON vector or a multipart safetensors upload), or fit a set",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [_inline_schema(DirectionCreate), _inline_schema(DirectionFitRequest)]}
                },
                "multipart/form-data": {"schema": _UPLOAD},
            },
        }
    },
)
async def create_direction(request: Request, tenant: Tenant, directions: DirectionHandlerDep) -> Response:
    made = await directions.create_from_request(tenant, request)
    if isinstance(made, DirectionFitResource):
        return model_response(made, 202, {"Location": f"/v1/directions/fits/{made.id}"})
    return model_response(made, 201)


@router.get(
    "/fits",
    response_model=DirectionFitList,
    responses=problems(401, 422, 503),
    summary="List direction fits, newest first",
)
async def list_fits(
    tenant: Tenant,
    directions: DirectionHandlerDep,
    limit: Annotated[
        int, Query(ge=1, description="Fits per page, at most `VSTEER_LIST_LIMIT_MAX` (100 by default).")
    ] = 20,
    cursor: Annotated[
        str | None, Query(pattern=JOB_ID_PATTERN, description="`next_cursor` of the previous page.")
    ] = None,
) -> DirectionFitList:
    return await directions.fits(tenant, cursor, limit)


@router.get(
    "/fits/{fit_id}",
    response_model=DirectionFitResource,
    responses=problems(401, 404, 422, 503),
    summary="Get a direction fit: its status, progress and, once it succeeded, the directions it stored",
)
async def get_fit(fit_id: FitId, tenant: Tenant, directions: DirectionHandlerDep) -> Response:
    return model_response(await directions.get_fit(tenant, fit_id))


@router.post(
    "/fits/{fit_id}/cancel",
    response_model=DirectionFitResource,
    responses={
        202: {"model": DirectionFitResource, "description": "Its worker was asked to stop."},
        **problems(401, 404, 409, 422, 503),
    },
    summary="Cancel a direction fit",
)
async def cancel_fit(fit_id: FitId, tenant: Tenant, directions: DirectionHandlerDep) -> Response:
    fit, status_code = await directions.cancel_fit(tenant, fit_id)
    return model_response(fit, status_code)


@router.get(
    "", response_model=DirectionList, responses=problems(401, 422, 503), summary="List directions, newest first"
)
async def list_directions(
    tenant: Tenant,
    directions: DirectionHandlerDep,
    limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first.")] = 100,
    cursor: Annotated[
        str | None, Query(pattern=DIRECTION_CURSOR_PATTERN, description="`next_cursor` of the previous page.")
    ] = None,
) -> DirectionList:
    return await directions.list(tenant, limit, cursor)


@router.get(
    "/{direction_id}",
    response_model=DirectionResource,
    responses=problems(401, 404, 422, 503),
    summary="Get a direction",
)
async def get_direction(
    direction_id: DirectionId, tenant: Tenant, directions: DirectionHandlerDep
) -> DirectionResource:
    return await directions.get(tenant, direction_id)


@router.delete("/{direction_id}", status_code=204, responses=problems(401, 404, 422, 503), summary="Delete a direction")
async def delete_direction(direction_id: DirectionId, tenant: Tenant, directions: DirectionHandlerDep) -> Response:
    await directions.delete(tenant, direction_id)
    return Response(status_code=204)


__all__ = ["router"]
