"""Image references decoded in the worker: limits are input errors naming the field, never a crash."""

import io

import PIL.Image
import pytest

from workers.errors import JobInputError
from workers.images import ImageResolver


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (width, height), (20, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (1, 200), (200, 1), (7, 64)])
def test_an_image_with_a_side_under_8_pixels_is_an_input_error(size):
    with pytest.raises(JobInputError, match="each side must be 8 or more") as raised:
        ImageResolver().decode(png(*size), "references[1].image")
    assert raised.value.field == "references[1].image"


def test_an_image_of_8_pixels_a_side_decodes():
    assert ImageResolver().decode(png(8, 300), "image").size == (8, 300)


def test_pixels_over_the_limit_are_an_input_error():
    with pytest.raises(JobInputError, match="over the limit of 1000"):
        ImageResolver(max_pixels=1000).decode(png(40, 40), "image")
