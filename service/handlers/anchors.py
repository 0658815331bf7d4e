"""Anchor sets: create, version, read, list and delete them, and merge one into a job that cites it,
for `service.routes.anchors` and the job handler."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api_schemas import FieldError, JobRequest
from api_schemas.anchors import (
    AnchorCreate,
    AnchorFields,
    AnchorList,
    AnchorResource,
    AnchorVersionCreate,
    fields_hash,
    merge_fields,
)
from jobstate.records import AnchorRecord, AnchorVersion, new_anchor_id
from jobstate.store import AsyncJobStore
from service.checks import check_anchor
from service.deps import SettingsDep, StorageDep, StoreDep
from service.errors import check_page_limit, invalid, not_found
from service.settings import Settings
from storage.base import Storage


class AnchorHandler:
    """The anchor routes' one collaborator, over the clients a request is injected with."""

    def __init__(self, store: AsyncJobStore, storage: Storage, settings: Settings) -> None:
        self.store = store
        self.storage = storage
        self.settings = settings

    async def create(self, tenant: str, body: AnchorCreate) -> AnchorResource:
        # 1. what it cites must exist for this tenant
        await check_anchor(body, tenant, self.store, self.settings, self.storage)
        # 2. version 1 of a new anchor set
        anchor_id = new_anchor_id()
        version = _version(body.name, body)
        number = await self.store.put_anchor(tenant, anchor_id, version, new=True)
        return _resource(AnchorRecord(id=anchor_id, latest=number, version=number, body=version))

    async def add_version(self, tenant: str, anchor_id: str, body: AnchorVersionCreate) -> AnchorResource:
        # 1. the anchor set exists (and is this tenant's); a new version keeps its name unless renamed
        current = await self.own(tenant, anchor_id)
        # 2. what the new version cites must exist for this tenant
        await check_anchor(body, tenant, self.store, self.settings, self.storage)
        # 3. the next version; the earlier ones stay as they are
        version = _version(body.name or current.body.name, body)
        number = await self.store.put_anchor(tenant, anchor_id, version, new=False)
        if number == 0:  # deleted meanwhile
            raise not_found("anchor set", anchor_id)
        return _resource(AnchorRecord(id=anchor_id, latest=number, version=number, body=version))

    async def own(self, tenant: str, anchor_id: str, version: int | None = None) -> AnchorRecord:
        """The tenant's anchor set at `version` (the latest when None); 404 when there is none."""
        record = await self.store.get_anchor(tenant, anchor_id, version)
        if record is None:
            raise not_found("anchor set", anchor_id if version is None else f"{anchor_id}@{version}")
        return record

    async def get(self, tenant: str, anchor_id: str, version: int | None = None) -> AnchorResource:
        return _resource(await self.own(tenant, anchor_id, version))

    async def page(self, tenant: str, cursor: str | None, limit: int) -> AnchorList:
        check_page_limit(limit, self.settings.list_limit_max)
        page = await self.store.list_anchors(tenant, cursor=cursor, limit=limit)
        return AnchorList(items=[_resource(r) for r in page.records], next_cursor=page.next_cursor)

    async def delete(self, tenant: str, anchor_id: str) -> None:
        """Remove the anchor set and all its versions. Jobs that cited it keep their merged documents."""
        if not await self.store.delete_anchor(tenant, anchor_id):
            raise not_found("anchor set", anchor_id)


async def apply_anchor(document: JobRequest, tenant: str, store: AsyncJobStore) -> JobRequest:
    """The job with the anchor set it cites merged under its own fields (`merge_fields`), citing the
    version and content hash it used; the document itself when it cites none or was merged already.

    The merged document is validated again, so rules between the job's fields and the anchor's
    (`sweep.direction` indexing the anchor's `directions`, say) are 422s like any other."""
    citation = document.anchor
    if citation is None or citation.merged():
        return document
    # 1. the cited version, which must exist (a deleted anchor set does not)
    record = await store.get_anchor(tenant, citation.id, citation.version)
    if record is None:
        raise invalid([FieldError(field="anchor", rule="unknown_anchor", message=f"no anchor set {str(citation)!r}")])
    # 2. the job's fields as sent, on top of the anchor's
    sent = document.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"anchor"})
    merged = merge_fields(record.body.fields, sent)
    merged["anchor"] = {"id": record.id, "version": record.version, "sha256": record.body.sha256}
    # 3. the merged document under the job document's rules
    try:
        return JobRequest.model_validate(merged)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _version(name: str, fields: AnchorFields) -> AnchorVersion:
    values = fields.fields()
    return AnchorVersion(name=name, fields=values, sha256=fields_hash(values), created_at=datetime.now(UTC))


def _resource(record: AnchorRecord) -> AnchorResource:
    body = record.body
    return AnchorResource.model_validate(
        {
            "id": record.id,
            "name": body.name,
            "version": record.version,
            "latest_version": record.latest,
            "sha256": body.sha256,
            "created_at": body.created_at,
            **body.fields,
        }
    )


async def get_anchor_handler(store: StoreDep, storage: StorageDep, settings: SettingsDep) -> AnchorHandler:
    return AnchorHandler(store, storage, settings)


AnchorHandlerDep = Annotated[AnchorHandler, Depends(get_anchor_handler)]
