"""Anchor sets in the contract: the same field rules as a job, the merge rule, the citation."""

import pytest
from pydantic import ValidationError

from api_schemas import JobRequest
from api_schemas.anchors import ANCHOR_FIELDS, AnchorCreate, AnchorFields, fields_hash, merge_fields
from api_schemas.job import AnchorCitation


def test_anchor_fields_are_the_job_documents_fields() -> None:
    """Each field an anchor holds has the job document's schema (bounds, patterns, descriptions aside
    from what "unset" means), so a bound changed in one place and not the other fails here."""
    job = JobRequest.model_json_schema()
    anchor = AnchorFields.model_json_schema()
    assert set(AnchorFields.model_fields) == set(ANCHOR_FIELDS)
    for name in ANCHOR_FIELDS:
        theirs = {k: v for k, v in job["properties"][name].items() if k not in ("default", "description", "title")}
        ours = {k: v for k, v in anchor["properties"][name].items() if k not in ("default", "description", "title")}
        # the anchor's field is optional: `anyOf: [<the job's>, null]`
        options = ours.get("anyOf", [ours])
        plain = [o for o in options if o != {"type": "null"}]
        inner = theirs.get("anyOf", [theirs])
        inner = [o for o in inner if o != {"type": "null"}]
        assert plain == inner, name


def test_merge_objects_field_by_field_lists_and_values_replace() -> None:
    base = {
        "seed": 1,
        "generation": {"steps": 10, "guidance": {"min": 0.5, "max": 2.0}},
        "references": [{"image": "asset:a", "weight": 1.0}, {"image": "asset:b", "weight": 1.0}],
        "variation": {"seed": 3, "strength": 0.2},
    }
    over = {
        "generation": {"guidance": {"max": 3.0}, "fps": 9},
        "references": [{"image": "asset:c", "weight": 0.5}],
        "variation": None,
        "image": "asset:x",
    }
    merged = merge_fields(base, over)
    assert merged == {
        "seed": 1,
        "generation": {"steps": 10, "guidance": {"min": 0.5, "max": 3.0}, "fps": 9},
        "references": [{"image": "asset:c", "weight": 0.5}],
        "variation": None,
        "image": "asset:x",
    }
    assert base["generation"] == {"steps": 10, "guidance": {"min": 0.5, "max": 2.0}}  # inputs unchanged
    assert merge_fields(base, {"references": []})["references"] == []


def test_stored_fields_are_what_was_sent_and_hash_independent_of_order() -> None:
    anchor = AnchorCreate.model_validate(
        {"name": "n", "generation": {"steps": 10}, "variation": None, "directions": [{"source": {"vector": [1.0]}}]}
    )
    fields = anchor.fields()
    assert fields == {"generation": {"steps": 10}, "directions": [{"source": {"vector": [1.0]}}]}
    assert fields_hash(fields) == fields_hash(dict(reversed(list(fields.items()))))
    assert fields_hash(fields) != fields_hash({**fields, "seed": 1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("anc_abc", ("anc_abc", None)), ("anc_abc@3", ("anc_abc", 3)), ({"id": "anc_x", "version": 2}, ("anc_x", 2))],
)
def test_citations(text: object, expected: tuple[str, int | None]) -> None:
    citation = AnchorCitation.model_validate(text)
    assert (citation.id, citation.version) == expected and not citation.merged()


def test_a_job_citing_an_anchor_defers_the_rules_the_anchor_can_satisfy() -> None:
    sweep = {"target": "direction", "to": 1.0, "count": 2}
    with pytest.raises(ValidationError, match="index `directions`"):
        JobRequest.model_validate({"image": "asset:x", "sweep": sweep})
    JobRequest.model_validate({"image": "asset:x", "sweep": sweep, "anchor": "anc_x"})
    # once merged (the citation carries version and hash), the rules hold again
    merged = {"id": "anc_x", "version": 1, "sha256": "0" * 64}
    with pytest.raises(ValidationError, match="index `directions`"):
        JobRequest.model_validate({"image": "asset:x", "sweep": sweep, "anchor": merged})
