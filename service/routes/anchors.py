"""Anchor sets: named, versioned bundles of job fields that jobs cite with `"anchor": "anc_...@<version>"`."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api_schemas.anchors import AnchorCreate, AnchorList, AnchorResource, AnchorVersionCreate
from jobstate.records import ANCHOR_ID_PATTERN
from service.deps import Tenant
from service.handlers.anchors import AnchorHandlerDep
from service.routes.common import problems

router = APIRouter(prefix="/v1/anchors", tags=["anchors"])

AnchorId = Annotated[str, Path(description="Anchor set id, `anc_...`.", max_length=64)]
Version = Annotated[int, Path(ge=1, le=999_999_999, description="Version number, from 1.")]


def _answer(anchor: AnchorResource, status_code: int = 200) -> Response:
    # Only the fields the anchor set holds: one it left out is not `null` (which a job would merge).
    body = anchor.model_dump_json(by_alias=True, exclude_unset=True)
    return Response(body, status_code, media_type="application/json")


@router.post(
    "",
    status_code=201,
    response_model=AnchorResource,
    responses=problems(400, 401, 413, 422, 503),
    summary="Store an anchor set (version 1)",
)
async def create_anchor(body: AnchorCreate, tenant: Tenant, anchors: AnchorHandlerDep) -> Response:
    return _answer(await anchors.create(tenant, body), 201)


@router.get("", response_model=AnchorList, responses=problems(401, 422, 503), summary="List anchor sets, newest first")
async def list_anchors(
    tenant: Tenant,
    anchors: AnchorHandlerDep,
    cursor: Annotated[
        str | None, Query(pattern=ANCHOR_ID_PATTERN, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, description="Anchor sets per page, at most `VSTEER_LIST_LIMIT_MAX` (100 by default).")
    ] = 20,
) -> Response:
    page = await anchors.page(tenant, cursor, limit)
    return Response(page.model_dump_json(by_alias=True, exclude_unset=True), media_type="application/json")


@router.get(
    "/{anchor_id}",
    response_model=AnchorResource,
    responses=problems(401, 404, 422, 503),
    summary="Get an anchor set at its latest version",
)
async def get_anchor(anchor_id: AnchorId, tenant: Tenant, anchors: AnchorHandlerDep) -> Response:
    return _answer(await anchors.get(tenant, anchor_id))


@router.get(
    "/{anchor_id}/versions/{version}",
    response_model=AnchorResource,
    responses=problems(401, 404, 422, 503),
    summary="Get one version of an anchor set",
)
async def get_anchor_version(
    anchor_id: AnchorId, version: Version, tenant: Tenant, anchors: AnchorHandlerDep
) -> Response:
    return _answer(await anchors.get(tenant, anchor_id, version))


@router.post(
    "/{anchor_id}/versions",
    status_code=201,
    response_model=AnchorResource,
    responses=problems(400, 401, 404, 413, 422, 503),
    summary="Store a new version of an anchor set (the whole bundle; earlier versions stay as they are)",
)
async def add_anchor_version(
    anchor_id: AnchorId, body: AnchorVersionCreate, tenant: Tenant, anchors: AnchorHandlerDep
) -> Response:
    return _answer(await anchors.add_version(tenant, anchor_id, body), 201)


@router.delete(
    "/{anchor_id}",
    status_code=204,
    response_class=Response,
    responses=problems(401, 404, 422, 503),
    summary="Delete an anchor set and all its versions (jobs that cited it keep their merged documents)",
)
async def delete_anchor(anchor_id: AnchorId, tenant: Tenant, anchors: AnchorHandlerDep) -> Response:
    await anchors.delete(tenant, anchor_id)
    return Response(status_code=204)


__all__ = ["router"]
