"""Stored directions: upload a vector (JSON or a safetensors file), read, list and delete them, for
`service.routes.directions`.

The vector goes to storage where the worker reads it (`directions/<tenant>/<id>.safetensors`, one
float32 tensor named `direction`, written here without torch); its record (model, space, width,
sha256, name) is kept in Redis, with a per-tenant index for listing, newest first.
"""

import hashlib
import json
import math
import secrets
import struct
from datetime import UTC, datetime
from typing import Annotated, Any

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
    DirectionList,
    DirectionResource,
    ModelDimensions,
    check_width,
)
from jobstate.redis_keys import PREFIX, direction_record_key
from jobstate.store import AsyncJobStore
from service.deps import SettingsDep, StorageDep, StoreDep
from service.errors import invalid, not_found
from service.settings import Settings
from storage.base import Storage
from storage.keys import direction_key

TITLE = "Invalid direction"


def _record_key(tenant: str, direction_id: str) -> str:
    return direction_record_key(tenant, direction_id)


def _index_key(tenant: str) -> str:
    return f"{PREFIX}directions:{tenant}"


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


class DirectionHandler:
    """The direction routes' one collaborator."""

    def __init__(self, store: AsyncJobStore, storage: Storage, settings: Settings) -> None:
        self.redis = store.redis
        self.storage = storage
        self.settings = settings

    async def create_from_request(self, tenant: str, request: Request) -> DirectionResource:
        """JSON (`DirectionCreate`) or multipart (`file`: safetensors, with `model`, `space`, `name`)."""
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
            document: dict[str, Any] = {**fields, "vector": values}
        else:
            try:
                document = json.loads(await request.body() or b"null")
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise invalid(
                    [FieldError(field="", rule="json", message=f"the body is not JSON: {exc}")], TITLE
                ) from None
        try:
            body = DirectionCreate.model_validate(document)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        return await self.create(tenant, body)

    async def create(self, tenant: str, body: DirectionCreate) -> DirectionResource:
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
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(_record_key(tenant, direction_id), resource.model_dump_json())
            pipe.zadd(_index_key(tenant), {direction_id: resource.created_at.timestamp()})
            await pipe.execute()
        return resource

    async def get(self, tenant: str, direction_id: str) -> DirectionResource:
        raw = await self.redis.get(_record_key(tenant, direction_id))
        if raw is None:
            raise not_found("direction", direction_id)
        return DirectionResource.model_validate_json(raw)

    async def list(self, tenant: str, limit: int) -> DirectionList:
        ids = await self.redis.zrevrange(_index_key(tenant), 0, limit - 1)
        records = await self.redis.mget([_record_key(tenant, i.decode()) for i in ids]) if ids else []
        return DirectionList(items=[DirectionResource.model_validate_json(r) for r in records if r is not None])

    async def delete(self, tenant: str, direction_id: str) -> None:
        await self.get(tenant, direction_id)  # 404 for another tenant's or an unknown id
        await run_in_threadpool(self.storage.delete, direction_key(tenant, direction_id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(_record_key(tenant, direction_id))
            pipe.zrem(_index_key(tenant), direction_id)
            await pipe.execute()


async def get_direction_handler(store: StoreDep, storage: StorageDep, settings: SettingsDep) -> DirectionHandler:
    return DirectionHandler(store, storage, settings)


DirectionHandlerDep = Annotated[DirectionHandler, Depends(get_direction_handler)]
