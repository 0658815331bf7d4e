"""Object keys: where each thing lives in the bucket (DESIGN.md §4).

``jobs/<tenant>/<job_id>/video.mp4`` (and ``poster.png``, ``preview.gif``, ``manifest.json``,
``frames.npy``, ``clips/<k>.mp4``), ``assets/<tenant>/<asset_id>``,
``directions/<tenant>/<direction_id>.safetensors`` and ``.json``,
``comparisons/<tenant>/<comparison_id>/video.mp4`` (and ``contact_sheet.png``, ``table.json``).

Keys are deterministic: the same job id always writes the same keys, so a redelivered job overwrites
its own objects instead of leaving duplicates. Every segment is checked, so that no id can climb out of
its prefix (``..``) or address another tenant's objects.
"""

import re
from pathlib import PurePosixPath

# Ids the service mints and tenants named in configuration: letters, digits, `_`, `-`, `.` inside.
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_KEY_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._=-]{0,254}$")
MAX_KEY_LENGTH = 1024


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        raise ValueError(f"`{what}` must match [A-Za-z0-9_-][A-Za-z0-9._-]{{0,127}} without '..', got {value!r}")
    return value


# What expires with a finished job (`VSTEER_RETENTION_DAYS`): its results and comparisons' side-by-sides.
RETAINED_PREFIXES = ("jobs/", "comparisons/")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key: `/`-separated parts, none empty, `.` or `..`.

    A part may not start with a dot, which also keeps local-storage metadata (``.meta/``) out of reach.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"an object key must be a non-empty string of at most {MAX_KEY_LENGTH} characters")
    for part in key.split("/"):
        if not _KEY_PART.match(part):
            raise ValueError(
                f"every part of an object key must match [A-Za-z0-9_-][A-Za-z0-9._=-]*, got {part!r} in {key!r}"
            )
    return key


def job_prefix(tenant: str, job_id: str) -> str:
    """``jobs/<tenant>/<job_id>/``: the folder of one job's outputs."""
    return f"jobs/{_segment(tenant, 'tenant')}/{_segment(job_id, 'job_id')}/"


def job_key(tenant: str, job_id: str, name: str) -> str:
    """The key of one output of a job, e.g. ``job_key(t, j, "clips/0.mp4")``.

    ``name`` is the output's path relative to the job's folder, as the job runner wrote it.
    """
    relative = PurePosixPath(name)
    if relative.is_absolute():
        raise ValueError(f"a job output name must be relative, got {name!r}")
    return check_key(job_prefix(tenant, job_id) + relative.as_posix())


def asset_key(tenant: str, asset_id: str) -> str:
    """``assets/<tenant>/<asset_id>``: an uploaded image or video."""
    return f"assets/{_segment(tenant, 'tenant')}/{_segment(asset_id, 'asset_id')}"


def direction_key(tenant: str, direction_id: str, ext: str = "safetensors") -> str:
    """``directions/<tenant>/<direction_id>.safetensors`` (the vector) or ``.json`` (its description)."""
    if ext not in ("safetensors", "json"):
        raise ValueError(f"a direction is stored as `safetensors` or `json`, got {ext!r}")
    return f"directions/{_segment(tenant, 'tenant')}/{_segment(direction_id, 'direction_id')}.{ext}"


def comparison_key(tenant: str, comparison_id: str, name: str) -> str:
    """``comparisons/<tenant>/<comparison_id>/<name>``: a comparison's side-by-side, contact sheet or table."""
    return check_key(f"comparisons/{_segment(tenant, 'tenant')}/{_segment(comparison_id, 'comparison_id')}/{name}")
