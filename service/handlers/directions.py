"""Directions: upload a vector (JSON or a safetensors file), fit a set on the tenant's images, read, list
and delete them, for `service.routes.directions`.

An uploaded vector goes to storage where the worker reads it (`directions/<tenant>/<id>.safetensors`,
one float32 tensor named `direction`, written here without torch); its record (model, space, width,
sha256, name) is kept in Redis, with a per-tenant index for listing, newest first (`jobstate.directions`).

A fit (`{"method": ...}`) needs the model's encoders, so it runs as a job on the model's GPU queue: it is
recorded and queued as a job is, and read and canceled at `/v1/directions/fits/{id}`; its worker stores
the directions it fits as uploads are stored.
"""

import hashlib
import json
import logging
import math
import secrets
import struct
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api_schemas import FieldError
from api_schemas.directions import (
    KNOWN_DIMENSIONS,
    MAX_DIRECTION_VALUES,
    DirectionCreate,
    DirectionFitList,
    DirectionFitRequest,
    DirectionFitResource,
    DirectionList,
    DirectionResource,
    ModelDimensions,
    check_width,
)
from jobstate import directions as records
from jobstate.records import JobRecord, Presigner, is_fit, new_job_id, to_fit_resource
from jobstate.store import AsyncJobStore
from service.checks import check_fit
from service.deps import QueueDep, SettingsDep, StorageDep, StoreDep
from service.errors import check_page_limit, invalid, not_found
from service.handlers.jobs import cancel_record, presigner
from service.queue import JobQueue, job_task
from service.settings import Settings
from storage.base import Storage
from storage.keys import direction_key

log = logging.getLogger(__name__)
TITLE = "Invalid direction"


def model_dimensions(settings: Settings, model: str) -> ModelDimensions | None:
    """The widths of `model`'s directions: configured, else the built-in models' own."""
    configured = settings.model_dimensions.get(model)
    if configured is not None:
        return ModelDimensions.model_validate(configured)
    return KNOWN_DIMENSIONS.get(model)


def safetensors_bytes(values: list[float]) -> bytes:
    """One float32 tensor named `direction`, in the safetensors layout (a little-endian u64 header
    length, the JSON header padded to 8 bytes, then the data)."""
    data = struct.pack(f"<{len(values)}f", *values)
    header = json.dumps({"direction": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def read_safetensors(data: bytes) -> list[float]:
    """The values of the file's `direction` tensor (or its only tensor), float32 or float64, flattened."""
    if len(data) < 8:
        raise ValueError("the file is too short to be safetensors")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(len(data) - 8, 1 << 20):
        raise ValueError("the file's safetensors header is cut short or too large")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the file's safetensors header is not JSON") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"} if isinstance(header, dict) else {}
    entry = tensors.get("direction") or (next(iter(tensors.values())) if len(tensors) == 1 else None)
    if not isinstance(entry, dict):
        raise ValueError("the file holds no tensor named `direction` (nor a single tensor)")
    formats = {"F32": "f", "F64": "d"}
    if entry.get("dtype") not in formats:
        raise ValueError(f"the direction must be F32 or F64, not {entry.get('dtype')}")
    start, end = entry.get("data_offsets", (0, -1))
    body = data[8 + length + start : 8 + length + end]
    size = struct.calcsize(formats[entry["dtype"]])
    count = math.prod(entry.get("shape", []))
    if count < 1 or len(body) != count * size or count > MAX_DIRECTION_VALUES:
        raise ValueError(f"the tensor must hold 1 to {MAX_DIRECTION_VALUES} values its shape and bytes agree on")
    return list(struct.unpack(f"<{count}{formats[entry['dtype']]}", body))


def _validation_error(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])


_Body = TypeVar("_Body", DirectionCreate, DirectionFitRequest)


class DirectionHandler:
    """The direction routes' one collaborator."""

    def __init__(self, store: AsyncJobStore, storage: Storage, queue: JobQueue, settings: Settings) -> None:
        self.store = store
        self.redis = store.redis
        self.storage = storage
        self.queue = queue
        self.settings = settings

    async def create_from_request(self, tenant: str, request: Request) -> DirectionResource | DirectionFitResource:
        """JSON (`DirectionCreate` to store a vector, `DirectionFitRequest` to fit a set) or multipart
        (`file`: safetensors, with `model`, `space`, `name`)."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise invalid([FieldError(field="file", rule="required", message="a safetensors `file` part")], TITLE)
            try:
                values = read_safetensors(await upload.read())
            except ValueError as exc:
                raise invalid([FieldError(field="file", rule="safetensors", message=str(exc))], TITLE) from None
            fields: dict[str, Any] = {k: v for k, v in form.items() if k in ("model", "space", "name")}
            document: Any = {**fields, "vector": values}
        else:
            try:
                document = json.loads(await request.body() or b"null")
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise invalid(
                    [FieldError(field="", rule="json", message=f"the body is not JSON: {exc}")], TITLE
                ) from None
        try:
            if isinstance(document, dict) and "method" in document:
                return await self.fit(tenant, DirectionFitRequest.model_validate(document))
            body = DirectionCreate.model_validate(document)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        return await self.create(tenant, body)

    async def fit(self, tenant: str, body: DirectionFitRequest) -> DirectionFitResource:
        """Record the fit and queue it on its model's GPU queue, in one step, as a job is."""
        body = self.on_default_model(body)
        await check_fit(body, tenant, self.store, self.settings)
        if model_dimensions(self.settings, body.model) is None:
            message = f"the widths of model {body.model!r} are not configured (VSTEER_MODEL_DIMENSIONS)"
            raise invalid([FieldError(field="model", rule="known_dimensions", message=message)], TITLE)
        job_id = new_job_id(tenant)
        created = await self.store.create(
            job_id,
            tenant,
            body.model,
            body.model_dump(mode="json"),
            max_active=self.settings.max_active_jobs_per_tenant,
            task=job_task(job_id, tenant, body.model),
            retain_s=self.settings.retention_days * 86400,
        )
        return to_fit_resource(created.record, self.presign)

    async def own_fit(self, tenant: str, fit_id: str) -> JobRecord:
        record = await self.store.get(tenant, fit_id)
        if record is None or not is_fit(record):
            raise not_found("direction fit", fit_id)
        return record

    async def get_fit(self, tenant: str, fit_id: str) -> DirectionFitResource:
        (fit,) = await self.current([to_fit_resource(await self.own_fit(tenant, fit_id), self.presign)], tenant)
        return fit

    async def current(self, fits: list[DirectionFitResource], tenant: str) -> list[DirectionFitResource]:
        """The fits with the directions deleted since they were stored left out."""
        kept = await records.existing_directions(self.redis, tenant, (d.id for f in fits for d in f.directions))
        return [f.model_copy(update={"directions": [d for d in f.directions if d.id in kept]}) for f in fits]

    async def fits(self, tenant: str, cursor: str | None, limit: int) -> DirectionFitList:
        """A page of the tenant's fits, newest first (they share the tenant's job index)."""
        check_page_limit(limit, self.settings.list_limit_max)
        page = await self.store.list_jobs(tenant, cursor=cursor, limit=limit, keep=is_fit)
        presign = self.presign
        items = await self.current([to_fit_resource(r, presign) for r in page.records], tenant)
        return DirectionFitList(items=items, next_cursor=page.next_cursor)

    async def cancel_fit(self, tenant: str, fit_id: str) -> tuple[DirectionFitResource, int]:
        """Cancel a queued fit at once (200), or ask its worker to stop between images (202)."""
        await self.own_fit(tenant, fit_id)
        record, status_code = await cancel_record(self.store, self.queue, self.presign, fit_id, "direction fit")
        (fit,) = await self.current([to_fit_resource(record, self.presign)], tenant)
        return fit, status_code

    def on_default_model(self, body: _Body) -> _Body:
        """The body with the service's default model where it names none, as a job's is."""
        return body if body.model else body.model_copy(update={"model": self.settings.default_model})

    @property
    def presign(self) -> Presigner:
        return presigner(self.storage, self.settings)

    async def create(self, tenant: str, body: DirectionCreate) -> DirectionResource:
        body = self.on_default_model(body)
        # 1. it must fit the model's space
        if body.model not in self.settings.models:
            known = ", ".join(self.settings.models)
            raise invalid(
                [
                    FieldError(
                        field="model", rule="known_model", message=f"unknown model {body.model!r}; known: {known}"
                    )
                ],
                TITLE,
            )
        dims = model_dimensions(self.settings, body.model)
        if dims is None:
            message = f"the widths of model {body.model!r} are not configured (VSTEER_MODEL_DIMENSIONS)"
            raise invalid([FieldError(field="model", rule="known_dimensions", message=message)], TITLE)
        if (why := check_width(len(body.vector), body.space, dims, body.model)) is not None:
            raise invalid([FieldError(field="vector", rule="model_width", message=why)], TITLE)
        # 2. the vector where the worker reads it, then the record that lists it
        direction_id = "dir_" + secrets.token_urlsafe(16)
        data = safetensors_bytes(body.vector)
        await run_in_threadpool(self.storage.put, direction_key(tenant, direction_id), data, "application/octet-stream")
        resource = DirectionResource(
            id=direction_id,
            name=body.name,
            model=body.model,
            space=body.space,
            dimension=len(body.vector),
            method="upload",
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=datetime.now(UTC),
        )
        await records.put_directions_async(self.redis, tenant, [resource])
        return resource

    async def get(self, tenant: str, direction_id: str) -> DirectionResource:
        resource = await records.get_direction(self.redis, tenant, direction_id)
        if resource is None:
            raise not_found("direction", direction_id)
        return resource

    async def list(self, tenant: str, limit: int, cursor: str | None = None) -> DirectionList:
        items, next_cursor = await records.list_directions(self.redis, tenant, limit, cursor)
        return DirectionList(items=items, next_cursor=next_cursor)

    async def delete(self, tenant: str, direction_id: str) -> None:
        await self.get(tenant, direction_id)  # 404 for another tenant's or an unknown id
        await run_in_threadpool(self.storage.delete, direction_key(tenant, direction_id))
        await records.delete_direction(self.redis, tenant, direction_id)


async def get_direction_handler(
    store: StoreDep, storage: StorageDep, queue: QueueDep, settings: SettingsDep
) -> DirectionHandler:
    return DirectionHandler(store, storage, queue, settings)


DirectionHandlerDep = Annotated[DirectionHandler, Depends(get_direction_handler)]
