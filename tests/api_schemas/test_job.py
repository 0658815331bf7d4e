"""The job document rejects bad input with the field's path and the rule it broke."""

import json

import pytest
from pydantic import ValidationError

from api_schemas import JobRequest

BASE = {"image": "asset:abc123"}


def errors_of(doc: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        JobRequest.model_validate(doc)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("patch", "field", "rule"),
    [
        ({"generation": {"num_frames": 1}}, "generation.num_frames", "greater than or equal to 2"),
        ({"generation": {"num_frames": 500}}, "generation.num_frames", "less than or equal to 128"),
        ({"generation": {"width": 100}}, "generation.width", "multiple of 64"),
        ({"generation": {"height": 4096}}, "generation.height", "less than or equal to 2048"),
        ({"generation": {"width": 0}}, "generation.width", "greater than or equal to 64"),
        ({"generation": {"steps": 0}}, "generation.steps", "greater than or equal to 1"),
        ({"generation": {"guidance": {"min": 4.0, "max": 3.0}}}, "generation.guidance", "min` must be <="),
        (
            {"generation": {"guidance": {"shape": "square"}}},
            "generation.guidance.shape",
            "'linear', 'triangle'",
        ),
        ({"variation": {"seed": 1, "strength": 1.5}}, "variation.strength", "less than or equal to 1"),
        ({"variation": {"seed": -1, "strength": 0.5}}, "variation.seed", "greater than or equal to 0"),
        (
            {"references": [{"image": "asset:x", "weight": -0.1}]},
            "references.0.weight",
            "greater than or equal",
        ),
        ({"seed": 2**64}, "seed", "less than or equal to"),
        ({"generation": {"noise_aug_strength": float("nan")}}, "generation.noise_aug_strength", "finite"),
        ({"directions": [{"source": {"vector": [1e39, 0.0]}}]}, "directions.0.source", "fit a 32-bit float"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"generation": {"frames": 8}}, "generation.frames", "Extra inputs are not permitted"),
        ({"image": "asset:../../etc"}, "image", "asset:<id>"),
        ({"image": "data:text/plain;base64,AAAA"}, "image", "data URI"),
    ],
)
def test_bad_fields_are_named_with_their_rule(patch, field, rule):
    errors = errors_of({**BASE, **patch})
    assert any(loc == field and rule in msg for loc, msg in errors), errors


@pytest.mark.parametrize(
    ("keyframes", "rule"),
    [
        ([{"image": "a.png", "at": 0.5}, {"image": "b.png", "at": 0.2}], "keyframes[1].at` must be greater"),
        ([{"image": "a.png", "at": 0.5}, {"image": "b.png", "at": 0.5}], "ascending"),
        ([{"image": "a.png", "at": 0.0}, {"image": "b.png", "at": 1.5}], "less than or equal to 1"),
        ([{"image": "a.png", "at": 0.0}], "at least 2 items"),
    ],
)
def test_keyframes_must_be_ascending_within_zero_one(keyframes, rule):
    errors = errors_of({"keyframes": keyframes})
    assert any(rule in msg for _, msg in errors), errors


TWO_KEYS = [{"image": "a.png", "at": 0.0}, {"image": "b.png", "at": 1.0}]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"image": "a.png"}, "interpolation"),
        ({"keyframes": [*TWO_KEYS[:1], {"image": "c.png", "at": 0.5}, TWO_KEYS[1]]}, "keyframes"),
        ({"keyframes": [{"image": "a.png", "at": 0.1}, TWO_KEYS[1]]}, "keyframes[0].at"),
        ({"keyframes": [TWO_KEYS[0], {"image": "b.png", "at": 0.9}]}, "keyframes[1].at"),
    ],
)
def test_bidirectional_needs_two_keyframes_at_zero_and_one(doc, field):
    with pytest.raises(ValidationError) as info:
        JobRequest.model_validate({**doc, "interpolation": "bidirectional"})
    (error,) = info.value.errors()
    assert error["type"] == "bidirectional_two_keyframes"
    assert error["ctx"]["field"] == field
    assert "exactly two keyframes, at 0 and 1" in error["msg"]


def test_bidirectional_with_two_keyframes_at_the_ends_is_a_job():
    job = JobRequest.model_validate({"keyframes": TWO_KEYS, "interpolation": "bidirectional"})
    assert job.interpolation == "bidirectional"
    # A sweep's path between two values has no bidirectional interpolation.
    errors = errors_of({**BASE, "sweep": {"target": "seed", "to": 2, "count": 2, "interpolation": "bidirectional"}})
    assert any(loc == "sweep.interpolation" for loc, _ in errors), errors


@pytest.mark.parametrize(
    ("segments", "extra", "field", "rule"),
    [
        ({"count": 0}, {}, "segments.count", "greater_than_equal"),
        ({"count": 17}, {}, "segments.count", "less_than_equal"),
        ({"count": 2, "overlap": -1}, {}, "segments.overlap", "greater_than_equal"),
        (
            {"count": 2, "overlap": 4},
            {"generation": {"num_frames": 4}},
            "segments.overlap",
            "segments_overlap_below_frames",
        ),
        ({"count": 2, "blend": "sigmoid"}, {}, "segments.blend", "enum"),
        ({"count": 3, "images": ["b.png"]}, {}, "segments.images", "segments_images_per_segment"),
        ({"count": 2, "images": ["asset:../x"]}, {}, "segments.images", "value_error"),
        ({"count": 2, "frames": 3}, {}, "segments.frames", "extra_forbidden"),
        ({"count": 2}, {"sweep": {"target": "seed", "to": 2, "count": 2}}, "sweep", "segments_alone"),
    ],
)
def test_segments_bounds_and_rules_name_the_field(segments, extra, field, rule):
    with pytest.raises(ValidationError) as info:
        JobRequest.model_validate({**BASE, **extra, "segments": segments})
    found = [
        (".".join(str(p) for p in e["loc"]) or e.get("ctx", {}).get("field"), e["type"]) for e in info.value.errors()
    ]
    assert any((loc == field or loc.startswith(field)) and kind == rule for loc, kind in found), found


def test_segments_images_are_image_refs_the_job_reads():
    job = JobRequest.model_validate({**BASE, "segments": {"count": 3, "overlap": 2, "images": ["b.png", "c.png"]}})
    assert job.image_refs()[-2:] == [("segments.images[0]", "b.png"), ("segments.images[1]", "c.png")]
    assert job.map_image_refs(str.upper).segments.images == ["B.PNG", "C.PNG"]


def test_image_or_keyframes_exactly_one():
    assert any("needs `image` or `keyframes`" in m for _, m in errors_of({}))
    both = {"image": "a.png", "keyframes": [{"image": "a.png", "at": 0}, {"image": "b.png", "at": 1}]}
    assert any("not both" in m for _, m in errors_of(both))


def test_a_valid_document_round_trips_through_json():
    doc = {
        "seed": 42,
        "keyframes": [{"image": "asset:a", "at": 0.0}, {"image": "asset:b", "at": 1.0}],
        "interpolation": "geodesic",
        "references": [{"image": "asset:c", "weight": 0.5}],
        "generation": {"num_frames": 14, "width": 1024, "height": 576, "guidance": {"shape": "triangle"}},
        "directions": [
            {"source": {"vector": [0.0, 1.0]}, "space": "latent", "strength": {"from": 0, "to": 2, "over": "steps"}}
        ],
    }
    job = JobRequest.model_validate(doc)
    again = JobRequest.model_validate(json.loads(json.dumps(job.dump())))
    assert again == job
    assert job.dump()["directions"][0]["strength"]["from"] == 0.0


def test_map_image_refs_reaches_every_image_field():
    job = JobRequest.model_validate(
        {
            "image": "a.png",
            "references": [{"image": "b.png", "weight": 1}],
            "negative_image": "c.png",
            "style": {"image": "d.png", "strength": 0.5},
            "sweep": {"target": "image", "to": "e.png", "count": 2},
        }
    )
    mapped = job.map_image_refs(lambda ref: "/abs/" + ref)
    assert sorted(ref for _, ref in mapped.image_refs()) == [f"/abs/{c}.png" for c in "abcde"]


def test_image_refs_name_each_image_by_its_field_path():
    job = JobRequest.model_validate(
        {
            "keyframes": [{"image": "k0.png", "at": 0}, {"image": "k1.png", "at": 1}],
            "references": [{"image": "r0.png", "weight": 1}, {"image": "r1.png", "weight": 0.5}],
            "style": {"image": "s.png", "strength": 0.5},
        }
    )
    assert job.image_refs() == [
        ("keyframes[0].image", "k0.png"),
        ("keyframes[1].image", "k1.png"),
        ("references[0].image", "r0.png"),
        ("references[1].image", "r1.png"),
        ("style.image", "s.png"),
    ]
    mapped = job.map_image_refs(str.upper)
    assert [k.image for k in mapped.keyframes or []] == ["K0.PNG", "K1.PNG"]
    assert [r.image for r in mapped.references] == ["R0.PNG", "R1.PNG"]
    assert mapped.style is not None and mapped.style.image == "S.PNG"


@pytest.mark.parametrize(
    ("patch", "rule"),
    [
        ({"directions": [{"source": {"vector": [1.0]}, "steps": [0.2, 0.8]}]}, "`steps` needs `space: latent`"),
        (
            {"directions": [{"source": {"vector": [1.0]}, "strength": {"from": 0, "to": 1, "over": "steps"}}]},
            "`strength.over: steps` needs `space: latent`",
        ),
        ({"directions": [{"source": {"vector": [1.0], "id": "dir_x"}}]}, "exactly one of id, path, vector"),
        ({"sweep": {"target": "seed", "to": 3, "count": 2}, "variation": {"seed": 1, "strength": 0.5}}, "leave out"),
        ({"sweep": {"target": "direction", "to": 1.0, "count": 2}}, "`sweep.direction` must index"),
        ({"sweep": {"target": "motion_bucket_id", "to": 5000, "count": 2}}, "between 0 and 1023"),
        ({"style": {"image": "asset:s", "strength": 0.5, "steps": [0.8, 0.2]}}, "0 <= a <= b <= 1"),
    ],
)
def test_steering_fields_check_their_combinations(patch, rule):
    errors = errors_of({**BASE, **patch})
    assert any(rule in msg for _, msg in errors), errors
