"""Assets: images and videos uploaded once and referred to by jobs as `asset:<id>`."""

from typing import Annotated

from fastapi import APIRouter, File, Path, Query, UploadFile

from api_schemas import Asset
from api_schemas.resources import AssetList
from jobstate.records import ASSET_ID_PATTERN
from service.deps import Tenant
from service.handlers.assets import AssetHandlerDep
from service.routes.common import problems

router = APIRouter(prefix="/v1/assets", tags=["assets"])


@router.post(
    "",
    status_code=201,
    response_model=Asset,
    responses=problems(400, 401, 413, 415, 422, 503),
    summary="Upload an image (PNG, JPEG, WebP, GIF) or a video (MP4, WebM)",
)
async def upload_asset(
    file: Annotated[UploadFile, File(description="The image or video; its type is read from its bytes.")],
    tenant: Tenant,
    assets: AssetHandlerDep,
) -> Asset:
    return await assets.upload(tenant, file)


@router.get("", response_model=AssetList, responses=problems(401, 422, 503), summary="List assets, newest first")
async def list_assets(
    tenant: Tenant,
    assets: AssetHandlerDep,
    cursor: Annotated[
        str | None, Query(pattern=ASSET_ID_PATTERN, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, description="Assets per page, at most `VSTEER_LIST_LIMIT_MAX` (100 by default).")
    ] = 20,
) -> AssetList:
    return await assets.page(tenant, cursor, limit)


@router.get("/{asset_id}", response_model=Asset, responses=problems(401, 404, 422, 503), summary="Get an asset")
async def get_asset(
    asset_id: Annotated[str, Path(max_length=64, description="Asset id, `ast_...`.")],
    tenant: Tenant,
    assets: AssetHandlerDep,
) -> Asset:
    return await assets.get(tenant, asset_id)
