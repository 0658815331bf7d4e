"""`/v1/files/<key>`: the presigned URLs of the local storage backend (S3 serves its own).

The URL is the credential: an HMAC over the key and the expiry time. A wrong, expired or altered
token answers 404, like a missing file, so another tenant's keys cannot be probed.
"""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from service.deps import StorageDep
from service.errors import not_found
from service.routes.common import problems
from storage.local import LocalStorage, verify_file_token

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.get(
    "/{key:path}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file."}, **problems(404, 422)},
    summary="Download a file by presigned URL (local storage)",
)
async def get_file(
    key: str,
    storage: StorageDep,
    expires: Annotated[str, Query(max_length=20, description="Expiry, Unix seconds.")] = "",
    sig: Annotated[str, Query(max_length=128, description="HMAC-SHA256 signature, hex.")] = "",
) -> FileResponse:
    if not isinstance(storage, LocalStorage) or not verify_file_token(key, expires, sig, storage.secret):
        raise not_found("file", key)
    info = storage.info(key)
    if info is None:
        raise not_found("file", key)
    return FileResponse(storage.path_for(key), media_type=info.content_type or "application/octet-stream")
