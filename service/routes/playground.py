"""`/playground`: a page to try the API from a browser, served from files inside the package.

The page itself needs no key: it holds no data, and asks the person for a key that it sends to the
API (same origin) as `Authorization: Bearer …`. Only the files listed here are served, each with its
media type, so nothing else in the package folder can be read through this route.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from service.errors import not_found

router = APIRouter(include_in_schema=False)

PLAYGROUND_DIR = Path(__file__).resolve().parents[1] / "playground"

# name → media type; the page's own files, nothing else.
PLAYGROUND_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

# Scripts, styles and fonts come from this API only. Result files are presigned URLs that S3 storage
# serves from its own origin, so posters, videos and the manifest may come from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src * blob: data:; media-src * blob:; connect-src *; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _serve(name: str) -> FileResponse:
    media_type = PLAYGROUND_FILES.get(name)
    if media_type is None:
        raise not_found("file", f"playground/{name}")
    return FileResponse(
        PLAYGROUND_DIR / name,
        media_type=media_type,
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/playground", status_code=307)


@router.get("/playground")
async def playground() -> FileResponse:
    return _serve("index.html")


@router.get("/playground/{name}")
async def playground_file(name: str) -> FileResponse:
    return _serve(name)
