"""Number fields of the job document take numbers: a string or a boolean is an error naming the field,
and a JSON integer is a valid number."""

import json

import pytest
from pydantic import ValidationError

from api_schemas import JobRequest

BASE = {"image": "asset:abc123"}
SOURCE = {"vector": [1.0, 0.0]}


def errors_of(doc: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        JobRequest.model_validate_json(json.dumps(doc))
    return [(".".join(str(p) for p in e["loc"]), e["type"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"variation": {"seed": 1, "strength": "0.5"}}, "variation.strength"),
        ({"variation": {"seed": 1, "strength": True}}, "variation.strength"),
        ({"generation": {"guidance": {"max": "3"}}}, "generation.guidance.max"),
        ({"generation": {"noise_aug_strength": "0.02"}}, "generation.noise_aug_strength"),
        ({"references": [{"image": "asset:x", "weight": "1"}]}, "references.0.weight"),
        ({"style": {"image": "asset:x", "strength": 0.5, "steps": ["0", 1]}}, "style.steps"),
        ({"directions": [{"source": SOURCE, "strength": "2"}]}, "directions.0.strength"),
        ({"directions": [{"source": SOURCE, "frames": [0, "1"]}]}, "directions.0.frames"),
        ({"directions": [{"source": {"vector": [1.0, "0"]}}]}, "directions.0.source.vector"),
        (
            {"directions": [{"source": SOURCE, "space": "latent", "strength": {"from": "0", "to": 1}}]},
            "directions.0.strength.Ramp.from",
        ),
    ],
)
def test_strings_and_booleans_are_not_numbers(patch, field):
    errors = errors_of({**BASE, **patch})
    assert (field, "float_type") in errors, errors


def test_json_integers_are_numbers():
    doc = JobRequest.model_validate_json(
        '{"image": "asset:abc123", "variation": {"seed": 1, "strength": 1},'
        ' "generation": {"guidance": {"min": 1, "max": 3}, "noise_aug_strength": 0},'
        ' "directions": [{"source": {"vector": [1, 0]}, "strength": 2, "frames": [0, 1]}],'
        ' "style": {"image": "asset:x", "strength": 1, "steps": [0, 1]}}'
    )
    assert doc.variation is not None and doc.variation.strength == 1.0
    assert doc.directions[0].strength == 2 and doc.directions[0].frames == (0.0, 1.0)
