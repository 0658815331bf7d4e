"""A direction `source` may be two texts: `text`, and `from_text` (the empty prompt when unset), in the
embedding space only."""

import pytest
from pydantic import ValidationError

from api_schemas import Direction, DirectionSource


def errors(body: dict) -> list[tuple[tuple, str, str | None]]:
    with pytest.raises(ValidationError) as caught:
        Direction.model_validate(body)
    return [(e["loc"], e["type"], (e.get("ctx") or {}).get("field")) for e in caught.value.errors()]


def test_a_text_source_is_one_of_the_sources():
    direction = Direction.model_validate({"source": {"text": "a smiling face", "from_text": "a neutral face"}})
    assert direction.space == "embedding"
    assert (direction.source.text, direction.source.from_text) == ("a smiling face", "a neutral face")
    assert DirectionSource(text="a smiling face").from_text is None  # resolved as "" by the worker
    assert errors({"source": {"text": "a", "vector": [1.0]}})[0][1] == "value_error"


def test_a_text_source_needs_the_embedding_space():
    assert errors({"source": {"text": "a smiling face"}, "space": "latent"}) == [
        ((), "text_needs_embedding_space", "source.text")
    ]
    preserve = {"source": {"vector": [1.0]}, "space": "latent", "preserve": [{"vector": [1.0]}, {"text": "a face"}]}
    assert errors(preserve) == [((), "text_needs_embedding_space", "preserve[1].text")]


def test_from_text_goes_with_text_and_text_is_not_empty():
    assert errors({"source": {"id": "dir_a", "from_text": "a face"}}) == [
        (("source",), "from_text_needs_text", "from_text")
    ]
    assert errors({"source": {"text": ""}}) == [(("source", "text"), "string_too_short", None)]
    assert errors({"source": {"text": "x" * 1001}}) == [(("source", "text"), "string_too_long", None)]
