"""Image references inside a job document, and how to tell their kinds apart."""

import re
from enum import StrEnum

ASSET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DATA_URI = re.compile(r"^data:(image|video)/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)
# The shortest side an input image may have: the image encoder's antialiased resize pads by more than
# a 1-pixel side holds, and an image smaller than this carries nothing to condition on.
MIN_IMAGE_SIDE = 8


class RefKind(StrEnum):
    asset = "asset"
    data = "data"
    url = "url"
    path = "path"


def ref_kind(ref: str) -> RefKind:
    """Classify a reference; `path` is any string that is none of the others (CLI only)."""
    if ref.startswith("asset:"):
        return RefKind.asset
    if ref.startswith("data:"):
        return RefKind.data
    if ref.startswith(("https://", "http://", "s3://")):
        return RefKind.url
    return RefKind.path


def check_image_ref(ref: str | None) -> str | None:
    """Reject references whose syntax is wrong; whether a kind is allowed is the caller's rule."""
    if ref is None:
        return None
    kind = ref_kind(ref)
    if kind is RefKind.asset and not ASSET_ID.match(ref.removeprefix("asset:")):
        raise ValueError(f"an asset reference must be `asset:<id>` with id of [A-Za-z0-9_-]{{1,64}}, got {ref[:80]!r}")
    if kind is RefKind.data and not DATA_URI.match(ref):
        raise ValueError("a data URI must look like `data:image/<type>;base64,<data>`")
    if kind is RefKind.path and ("\x00" in ref or len(ref) > 4096):
        raise ValueError("a local path must be under 4096 characters with no NUL byte")
    return ref


def asset_id(ref: str) -> str:
    return ref.removeprefix("asset:")
