"""Pieces several routes share: OpenAPI error responses and a schema answered as JSON."""

from collections.abc import Mapping
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from api_schemas import Problem

_DESCRIPTIONS = {
    400: "The body cannot be read at all (JSON that is not UTF-8, a malformed multipart body).",
    401: "Missing or invalid API key.",
    404: "No such id for this tenant (another tenant's ids look the same).",
    409: "The request conflicts with the current state.",
    413: "The body is over the limit.",
    415: "The body's media type is not one the route takes (a job document is JSON; an upload is a "
    "supported image or video).",
    422: "The document breaks a rule; `field` and `errors` name the fields and rules (a job with both `image` and "
    "`keyframes`, or neither, breaks `image_or_keyframes`; a body that is not valid JSON breaks `json_invalid`).",
    429: "Over the API key's request rate, or (submit) over the tenant's queued + running jobs; "
    "retry after `Retry-After` seconds.",
    503: "Redis, storage or the queue is unreachable; retry after `Retry-After` seconds.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error codes, all `application/problem+json` bodies.

    A route that authenticates (401) is also rate limited per API key (429)."""
    if 401 in codes and 429 not in codes:
        codes = (*codes, 429)
    # `Problem` is in the components already (it is `JobResource.error`).
    schema = {"$ref": f"#/components/schemas/{Problem.__name__}"}
    return {
        code: {"description": _DESCRIPTIONS[code], "content": {"application/problem+json": {"schema": schema}}}
        for code in codes
    }


def model_response(body: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """`body` as JSON, serialised once. (Returned as a model, FastAPI would validate it again against
    the route's `response_model` before serialising; the route keeps `response_model` for OpenAPI.)"""
    return Response(body.model_dump_json(by_alias=True), status_code, headers, media_type="application/json")
