"""Anchor sets: a tenant's named, versioned bundle of job fields that jobs cite with `anchor`.

An anchor set holds any of the job document's `model`, `seed`, `variation`, `references`,
`negative_image`, `style`, `directions` and `generation`, with the same bounds and rules. It is
immutable: a change is a new version. A job citing it takes the anchor's fields as its base and its
own fields on top (`merge_fields`): objects merge field by field, everything else (numbers, strings,
lists) is replaced, and a field the job sets to `null` removes the anchor's.
"""

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from api_schemas.job import (
    ANCHOR_ID,
    MAX_SEED,
    Direction,
    Generation,
    ImageRef,
    Reference,
    Strict,
    Style,
    Variation,
)
from api_schemas.refs import check_image_ref
from api_schemas.resources import Resource

ANCHOR_FIELDS = ("model", "seed", "variation", "references", "negative_image", "style", "directions", "generation")
"""The job fields an anchor set may hold, in the job document's order."""


class AnchorFields(Strict):
    """The job fields an anchor set holds; each as in the job document (`JobRequest`), all optional."""

    model: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Registered model name.",
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed.")
    variation: Variation | None = None
    references: list[Reference] | None = Field(None, max_length=8)
    negative_image: ImageRef | None = Field(None, description="Conditioning of the unconditional branch of guidance.")
    style: Style | None = None
    directions: list[Direction] | None = Field(None, max_length=16)
    generation: Generation | None = None

    _check_image = field_validator("negative_image")(check_image_ref)

    def fields(self) -> dict[str, Any]:
        """The fields as sent (what was left out stays out, and so does `null`), JSON-ready: what the
        anchor stores, merges and hashes."""
        sent = self.model_dump(mode="json", by_alias=True, exclude_unset=True, include=set(ANCHOR_FIELDS))
        return {name: value for name, value in sent.items() if value is not None}

    def image_refs(self) -> list[tuple[str, str]]:
        """Every image the anchor names as (field path, reference), as `JobRequest.image_refs` does."""
        refs = [(f"references[{i}].image", r.image) for i, r in enumerate(self.references or [])]
        if self.negative_image is not None:
            refs.append(("negative_image", self.negative_image))
        if self.style is not None:
            refs.append(("style.image", self.style.image))
        return refs


class AnchorCreate(AnchorFields):
    """A new anchor set: its name and the job fields it holds (version 1)."""

    name: str = Field(min_length=1, max_length=128, description="A name for people; not unique.")


class AnchorVersionCreate(AnchorFields):
    """A new version of an anchor set: the whole bundle again (nothing is carried over but the name)."""

    name: str | None = Field(
        None, min_length=1, max_length=128, description="A new name (the previous version's if unset)."
    )


def fields_hash(fields: dict[str, Any]) -> str:
    """Hex SHA-256 of an anchor version's fields, as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def merge_fields(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: where both hold an object the two merge, field by field, at every depth;
    any other value of `over` (a number, a string, a list, `null`) replaces `base`'s. Neither is changed."""
    merged = dict(base)
    for name, value in over.items():
        below = merged.get(name)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[name] = merge_fields(below, value)
        else:
            merged[name] = value
    return merged


class AnchorResource(AnchorFields):
    """One version of an anchor set: the job fields it holds (those it left out are absent) and
    which version it is."""

    model_config = ConfigDict(extra="ignore")  # a response: clients survive additions

    id: str = Field(pattern=ANCHOR_ID, description="Anchor set id, `anc_...`; a job cites `anc_...@<version>`.")
    name: str = Field(description="The version's name.")
    version: int = Field(ge=1, description="This version.")
    latest_version: int = Field(ge=1, description="The newest version; a job citing no version takes it.")
    sha256: str = Field(description="Hex SHA-256 of the fields (`api_schemas.anchors.fields_hash`).")
    created_at: datetime = Field(description="When this version was stored (UTC).")


class AnchorList(Resource):
    """One page of the caller's anchor sets (each at its latest version), newest first."""

    items: list[AnchorResource] = Field(description="Anchor sets on this page.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")
