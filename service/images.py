"""What an uploaded or inline file really is: sniffed from its bytes, images decoded within a pixel limit."""

import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from api_schemas.refs import MIN_IMAGE_SIDE

SNIFF_BYTES = 64


@dataclass(frozen=True)
class Sniffed:
    kind: str  # "image" | "video"
    content_type: str


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    content_type: str


class MediaRejected(ValueError):
    """The content is not what the service accepts; `rule` names the broken rule."""

    def __init__(self, rule: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.rule = rule
        self.status = status


_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# ISO base media brands that are still images, not video.
_STILL_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1")


def sniff(head: bytes) -> Sniffed | None:
    """The kind and media type from the first bytes, whatever the client declared."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "image/png")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "image/jpeg")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Sniffed("image", "image/gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image", "image/webp")
    if head[4:8] == b"ftyp" and head[8:12] not in _STILL_BRANDS:
        return Sniffed("video", "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Sniffed("video", "video/webm")
    return None


def inspect_image(f: BinaryIO, max_pixels: int) -> ImageInfo:
    """Decode the image fully (so truncated or corrupt files fail here, not on a GPU) and check its size
    before any pixel is decoded; raises `MediaRejected`."""
    f.seek(0)
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; here it is an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(f) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise _too_many_pixels(width, height, max_pixels)
                if min(width, height) < MIN_IMAGE_SIDE:
                    raise MediaRejected(
                        "min_image_side",
                        f"the image is {width}x{height} pixels; each side must be {MIN_IMAGE_SIDE} or more",
                    )
                fmt = img.format or ""
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise MediaRejected(
                "max_image_pixels", f"the image has more than the limit of {max_pixels} pixels", 413
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, MediaRejected):
                raise
            # Pillow's "cannot identify image file" names the buffer object, which tells a client nothing.
            reason = "not a PNG, JPEG, WebP or GIF image" if isinstance(exc, UnidentifiedImageError) else str(exc)
            raise MediaRejected("image_decodable", f"the image cannot be decoded: {reason}") from None
    content_type = _IMAGE_TYPES.get(fmt)
    if content_type is None:
        raise MediaRejected("image_format", f"image format {fmt or 'unknown'} is not accepted (PNG, JPEG, WebP, GIF)")
    return ImageInfo(width, height, content_type)


def _too_many_pixels(width: int, height: int, max_pixels: int) -> MediaRejected:
    return MediaRejected(
        "max_image_pixels",
        f"the image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
        413,
    )
