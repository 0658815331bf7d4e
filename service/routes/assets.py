"""Assets: images and videos uploaded once and referred to by jobs as `asset:<id>`."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, File, Path, UploadFile
from starlette.concurrency import run_in_threadpool

from api_schemas import Asset, FieldError
from jobstate.records import AssetRecord, new_asset_id
from service.deps import SettingsDep, StorageDep, StoreDep, Tenant
from service.errors import ProblemError, invalid, not_found
from service.images import SNIFF_BYTES, MediaRejected, inspect_image, sniff
from service.routes.common import problems
from storage.keys import asset_key

router = APIRouter(prefix="/v1/assets", tags=["assets"])


def _asset(record: AssetRecord) -> Asset:
    return Asset.model_validate(record.model_dump(exclude={"tenant", "key"}))


@router.post(
    "",
    status_code=201,
    response_model=Asset,
    responses=problems(401, 413, 415, 422, 503),
    summary="Upload an image (PNG, JPEG, WebP, GIF) or a video (MP4, WebM)",
)
async def upload_asset(
    file: Annotated[UploadFile, File(description="The image or video; its type is read from its bytes.")],
    tenant: Tenant,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> Asset:
    # 1. size: the body limit stops the stream early; a file part alone over the limit is caught here
    if file.size is not None and file.size > settings.max_upload_bytes:
        raise ProblemError(
            413,
            "Content Too Large",
            f"the file exceeds the limit of {settings.max_upload_bytes} bytes",
            type_="too-large",
            field="file",
        )
    # 2. what it really is, whatever the client declared
    head = await file.read(SNIFF_BYTES)
    sniffed = sniff(head)
    if sniffed is None:
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "the file is not a PNG, JPEG, WebP or GIF image, nor an MP4 or WebM video",
            type_="unsupported-media",
            field="file",
        )
    # 3. images are decoded in full, within the pixel limit
    width = height = None
    content_type = sniffed.content_type
    if sniffed.kind == "image":
        try:
            info = await run_in_threadpool(inspect_image, file.file, settings.max_image_pixels)
        except MediaRejected as exc:
            if exc.status == 413:
                raise ProblemError(413, "Content Too Large", str(exc), type_="too-large", field="file") from None
            raise invalid([_field_error(exc)], title="Invalid image") from None
        width, height, content_type = info.width, info.height, info.content_type
    # 4. store the bytes, then the record that makes `asset:<id>` resolvable
    asset_id = new_asset_id()
    key = asset_key(tenant, asset_id)
    file.file.seek(0)
    stored = await run_in_threadpool(storage.put, key, file.file, content_type)
    record = AssetRecord(
        id=asset_id,
        tenant=tenant,
        key=key,
        kind=sniffed.kind,
        content_type=content_type,
        sha256=stored.sha256 or "",
        bytes=stored.size,
        width=width,
        height=height,
        created_at=datetime.now(UTC),
    )
    await store.put_asset(record)
    return _asset(record)


def _field_error(exc: MediaRejected) -> FieldError:
    return FieldError(field="file", rule=exc.rule, message=str(exc))


@router.get("/{asset_id}", response_model=Asset, responses=problems(401, 404, 422, 503), summary="Get an asset")
async def get_asset(
    asset_id: Annotated[str, Path(max_length=64, description="Asset id, `ast_...`.")], tenant: Tenant, store: StoreDep
) -> Asset:
    record = await store.get_asset(tenant, asset_id)
    if record is None:
        raise not_found("asset", asset_id)
    return _asset(record)
