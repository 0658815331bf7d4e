"""Turning a job's image references into decoded images, with limits and clear errors."""

import base64
import binascii
import io
from collections.abc import Callable
from pathlib import Path

import PIL.Image

from api_schemas.refs import MIN_IMAGE_SIDE, RefKind, asset_id, ref_kind
from workers.errors import JobInputError

MAX_PIXELS = 64 * 1024 * 1024


class ImageResolver:
    """Opens `asset:<id>`, `data:` URIs, (when allowed, as in the CLI) local paths and (when given
    `fetch_url`, as a worker with remote images enabled) URLs.

    `fetch_asset` maps an asset id to its bytes; the worker backs it with storage, the CLI has none.
    `fetch_url(url, field)` returns a URL's bytes (`workers.remote_images.RemoteImages.fetch`).
    """

    def __init__(
        self,
        *,
        fetch_asset: Callable[[str], bytes] | None = None,
        allow_paths: bool = False,
        base_dir: Path | None = None,
        max_pixels: int = MAX_PIXELS,
        fetch_url: Callable[[str, str], bytes] | None = None,
    ) -> None:
        self.fetch_asset = fetch_asset
        self.fetch_url = fetch_url
        self.allow_paths = allow_paths
        self.base_dir = base_dir  # relative paths are read from here (the job file's folder)
        self.max_pixels = max_pixels

    def read(self, ref: str, field: str) -> bytes:
        """The raw bytes behind a reference."""
        kind = ref_kind(ref)
        if kind is RefKind.data:
            try:
                return base64.b64decode(ref.split(",", 1)[1], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise JobInputError(field, "the data URI is not valid base64") from exc
        if kind is RefKind.asset:
            if self.fetch_asset is None:
                raise JobInputError(field, "asset references need the service; give a path or a data URI")
            try:
                return self.fetch_asset(asset_id(ref))
            except KeyError as exc:
                raise JobInputError(field, f"unknown asset {asset_id(ref)!r}") from exc
        if kind is RefKind.path:
            if not self.allow_paths:
                raise JobInputError(field, "local paths are accepted by the CLI only")
            path = Path(ref).expanduser()
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            if not path.is_file():
                raise JobInputError(field, f"no such file: {ref}")
            return path.read_bytes()
        if self.fetch_url is not None:
            return self.fetch_url(ref, field)
        raise JobInputError(field, "URL references are not enabled; upload the image as an asset")

    def open(self, ref: str, field: str) -> PIL.Image.Image:
        """Read and decode a reference to an RGB image."""
        return self.decode(self.read(ref, field), field)

    def decode(self, data: bytes, field: str) -> PIL.Image.Image:
        """Decode to an RGB image, refusing decompression bombs and anything that is not an image."""
        if not data:
            raise JobInputError(field, "the image is empty (0 bytes)")
        try:
            with PIL.Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > self.max_pixels:
                    raise JobInputError(
                        field, f"the image has {width}x{height} pixels, over the limit of {self.max_pixels}"
                    )
                if min(width, height) < MIN_IMAGE_SIDE:
                    raise JobInputError(
                        field, f"the image is {width}x{height} pixels; each side must be {MIN_IMAGE_SIDE} or more"
                    )
                probe.load()
                return probe.convert("RGB")
        except JobInputError:
            raise
        except (PIL.Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
            raise JobInputError(field, f"not a readable image ({type(exc).__name__})") from exc
