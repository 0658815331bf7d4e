"""Assets: upload and read the images and videos jobs refer to as `asset:<id>`, for `service.routes.assets`."""

import io
from datetime import UTC, datetime
from typing import Annotated, BinaryIO

from fastapi import Depends, UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from api_schemas import Asset, FieldError, JobRequest
from api_schemas.problems import ProblemType
from api_schemas.refs import RefKind, ref_kind
from api_schemas.resources import AssetList
from jobstate.records import AssetRecord, new_asset_id
from jobstate.store import AsyncJobStore
from service.checks import data_uri_bytes, video_data_uri_bytes
from service.deps import SettingsDep, StorageDep, StoreDep
from service.errors import ProblemError, check_page_limit, invalid, not_found
from service.images import SNIFF_BYTES, MediaRejected, inspect_image, sniff
from service.settings import Settings
from service.videos import VideoInfo, inspect_video
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
            message = "the file is not a PNG, JPEG, WebP or GIF image, nor an MP4 or WebM video"
            raise ProblemError(
                415,
                "Unsupported Media Type",
                message,
                type_=ProblemType.unsupported_media,
                field="file",
                errors=[FieldError(field="file", rule="media_type", message=message)],
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
        # 3b. videos are probed and decoded in full, within the limits a worker reads
        video: VideoInfo | None = None
        if sniffed.kind == "video":
            try:
                video = await run_in_threadpool(inspect_video, file.file)
            except MediaRejected as exc:
                raise invalid(
                    [FieldError(field="file", rule=exc.rule, message=str(exc))], title="Invalid video"
                ) from None
            width, height, content_type = video.width, video.height, video.content_type
        # 4. store the bytes, then the record that makes `asset:<id>` resolvable
        file.file.seek(0)
        record = await put_asset(
            self.store, self.storage, tenant, file.file, sniffed.kind, content_type, width, height, video
        )
        return _asset(record)

    async def get(self, tenant: str, asset_id: str) -> Asset:
        record = await self.store.get_asset(tenant, asset_id)
        if record is None:
            raise not_found("asset", asset_id)
        return _asset(record)

    async def page(self, tenant: str, cursor: str | None, limit: int) -> AssetList:
        """A page of the tenant's assets, newest first."""
        check_page_limit(limit, self.settings.list_limit_max)
        page = await self.store.list_assets(tenant, cursor=cursor, limit=limit)
        return AssetList(items=[_asset(r) for r in page.records], next_cursor=page.next_cursor)


async def put_asset(
    store: AsyncJobStore,
    storage: Storage,
    tenant: str,
    body: BinaryIO,
    kind: str,
    content_type: str,
    width: int | None,
    height: int | None,
    video: VideoInfo | None = None,
) -> AssetRecord:
    """Store checked content as a new asset of the tenant: the bytes, then the record that makes
    `asset:<id>` resolvable (with a video's probed frames, duration, frame rate and codec)."""
    asset_id = new_asset_id()
    key = asset_key(tenant, asset_id)
    stored = await run_in_threadpool(storage.put, key, body, content_type)
    record = AssetRecord(
        id=asset_id,
        tenant=tenant,
        key=key,
        kind=kind,
        content_type=content_type,
        sha256=stored.sha256 or "",
        bytes=stored.size,
        width=width,
        height=height,
        frames=None if video is None else video.frames,
        duration=None if video is None else video.duration,
        fps=None if video is None else video.fps,
        codec=None if video is None else video.codec,
        created_at=datetime.now(UTC),
    )
    await store.put_asset(record)
    return record


async def store_inline_images(doc: JobRequest, tenant: str, store: AsyncJobStore, storage: Storage) -> JobRequest:
    """The document with each inline `data:` image stored as an asset of the tenant and cited as
    `asset:<id>`, so the job's record, its resource, list pages and webhooks never carry image bytes.
    The document was checked (every inline image decodes within the pixel limit); an image given in
    several fields is stored once."""
    inline = {ref for _, ref in doc.image_refs() if ref_kind(ref) is RefKind.data}
    cited: dict[str, str] = {}
    for ref in sorted(inline):
        raw = data_uri_bytes(ref)
        # Checked already: its header gives the type and size without decoding it again.
        sniffed = sniff(raw[:SNIFF_BYTES])
        with Image.open(io.BytesIO(raw)) as img:
            width, height = img.size
        content_type = sniffed.content_type if sniffed is not None else f"image/{(img.format or 'png').lower()}"
        record = await put_asset(store, storage, tenant, io.BytesIO(raw), "image", content_type, width, height)
        cited[ref] = f"asset:{record.id}"
    doc = doc.map_image_refs(lambda ref: cited.get(ref, ref)) if cited else doc
    return await store_inline_video(doc, tenant, store, storage)


async def store_inline_video(doc: JobRequest, tenant: str, store: AsyncJobStore, storage: Storage) -> JobRequest:
    """The document with an inline `data:video/...` clip stored as a video asset of the tenant and cited
    as `asset:<id>` (the document was checked: the clip decodes within the limits)."""
    if doc.video is None or ref_kind(doc.video.source) is not RefKind.data:
        return doc
    raw = video_data_uri_bytes(doc.video.source)
    info = await run_in_threadpool(inspect_video, io.BytesIO(raw))
    record = await put_asset(
        store, storage, tenant, io.BytesIO(raw), "video", info.content_type, info.width, info.height, info
    )
    return doc.model_copy(update={"video": doc.video.model_copy(update={"source": f"asset:{record.id}"})})


def _too_large(detail: str) -> ProblemError:
    return ProblemError(413, "Content Too Large", detail, type_=ProblemType.too_large, field="file")


def _asset(record: AssetRecord) -> Asset:
    return Asset.model_validate(record.model_dump(exclude={"tenant", "key"}))


async def get_asset_handler(store: StoreDep, storage: StorageDep, settings: SettingsDep) -> AssetHandler:
    return AssetHandler(store, storage, settings)


AssetHandlerDep = Annotated[AssetHandler, Depends(get_asset_handler)]
