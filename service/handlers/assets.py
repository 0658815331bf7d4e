"""Assets: upload and read the images and videos jobs refer to as `asset:<id>`, for `service.routes.assets`."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, UploadFile
from starlette.concurrency import run_in_threadpool

from api_schemas import Asset, FieldError
from api_schemas.problems import ProblemType
from jobstate.records import AssetRecord, new_asset_id
from jobstate.store import AsyncJobStore
from service.deps import SettingsDep, StorageDep, StoreDep
from service.errors import ProblemError, invalid, not_found
from service.images import SNIFF_BYTES, MediaRejected, inspect_image, sniff
from service.settings import Settings
from storage.base import Storage
from storage.keys import asset_key


class AssetHandler:
    """The asset routes' one collaborator, over the clients a request is injected with."""

    def __init__(self, store: AsyncJobStore, storage: Storage, settings: Settings) -> None:
        self.store = store
        self.storage = storage
        self.settings = settings

    async def upload(self, tenant: str, file: UploadFile) -> Asset:
        # 1. size: the body limit stops the stream early; a file part alone over the limit is caught here
        if file.size is not None and file.size > self.settings.max_upload_bytes:
            raise _too_large(f"the file exceeds the limit of {self.settings.max_upload_bytes} bytes")
        # 2. what it really is, whatever the client declared
        head = await file.read(SNIFF_BYTES)
        sniffed = sniff(head)
        if sniffed is None:
            raise ProblemError(
                415,
                "Unsupported Media Type",
                "the file is not a PNG, JPEG, WebP or GIF image, nor an MP4 or WebM video",
                type_=ProblemType.unsupported_media,
                field="file",
            )
        # 3. images are decoded in full, within the pixel limit
        width = height = None
        content_type = sniffed.content_type
        if sniffed.kind == "image":
            try:
                info = await run_in_threadpool(inspect_image, file.file, self.settings.max_image_pixels)
            except MediaRejected as exc:
                if exc.status == 413:
                    raise _too_large(str(exc)) from None
                raise invalid(
                    [FieldError(field="file", rule=exc.rule, message=str(exc))], title="Invalid image"
                ) from None
            width, height, content_type = info.width, info.height, info.content_type
        # 4. store the bytes, then the record that makes `asset:<id>` resolvable
        asset_id = new_asset_id()
        key = asset_key(tenant, asset_id)
        file.file.seek(0)
        stored = await run_in_threadpool(self.storage.put, key, file.file, content_type)
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
        await self.store.put_asset(record)
        return _asset(record)

    async def get(self, tenant: str, asset_id: str) -> Asset:
        record = await self.store.get_asset(tenant, asset_id)
        if record is None:
            raise not_found("asset", asset_id)
        return _asset(record)


def _too_large(detail: str) -> ProblemError:
    return ProblemError(413, "Content Too Large", detail, type_=ProblemType.too_large, field="file")


def _asset(record: AssetRecord) -> Asset:
    return Asset.model_validate(record.model_dump(exclude={"tenant", "key"}))


async def get_asset_handler(store: StoreDep, storage: StorageDep, settings: SettingsDep) -> AssetHandler:
    return AssetHandler(store, storage, settings)


AssetHandlerDep = Annotated[AssetHandler, Depends(get_asset_handler)]
