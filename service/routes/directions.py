"""Directions: vectors stored once and cited by jobs as `{"id": "dir_..."}`."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api_schemas.directions import DirectionCreate, DirectionList, DirectionResource
from service.deps import Tenant
from service.handlers.directions import DirectionHandlerDep
from service.routes.common import problems

router = APIRouter(prefix="/v1/directions", tags=["directions"])

DirectionId = Annotated[str, Path(max_length=80, description="Direction id, `dir_...`.")]

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


@router.post(
    "",
    status_code=201,
    response_model=DirectionResource,
    responses=problems(400, 401, 413, 422, 503),
    summary="Store a direction made elsewhere (a JSON vector, or a multipart safetensors upload)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": DirectionCreate.model_json_schema()},
                "multipart/form-data": {"schema": _UPLOAD},
            },
        }
    },
)
async def create_direction(request: Request, tenant: Tenant, directions: DirectionHandlerDep) -> DirectionResource:
    return await directions.create_from_request(tenant, request)


@router.get(
    "", response_model=DirectionList, responses=problems(401, 422, 503), summary="List directions, newest first"
)
async def list_directions(
    tenant: Tenant,
    directions: DirectionHandlerDep,
    limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first.")] = 100,
) -> DirectionList:
    return await directions.list(tenant, limit)


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
