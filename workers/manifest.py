"""manifest.json: everything needed to reproduce a job and to know what produced it."""

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

from api_schemas import JobRequest
from workers.models import LoadedModel

MANIFEST_VERSION = 1
LIBRARIES = ("vsteer", "torch", "diffusers", "transformers", "numpy", "av", "pillow", "safetensors")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def describe_file(path: Path) -> dict[str, Any]:
    return {"path": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def build_manifest(
    *,
    job: JobRequest,
    job_id: str | None,
    model: LoadedModel,
    inputs: dict[str, Any],
    seeds: dict[str, Any],
    interpolation: dict[str, Any],
    steering: dict[str, Any],
    timings: dict[str, float],
    outputs: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    clips: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest document; `request` is the resolved job, so replaying it needs nothing else.
    `steering` says what each operation the job used did, by name."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "job_id": job_id,
        "request": job.dump(),
        "seeds": seeds,
        "model": model.describe(),
        "device": model.device,
        "dtype": str(model.dtype).removeprefix("torch."),
        "inputs": inputs,
        "interpolation": interpolation,
        "steering": steering,
        "libraries": library_versions(),
        "timings": {stage: round(seconds, 6) for stage, seconds in timings.items()},
        "outputs": outputs,
        "metrics": metrics or {},
        **({"clips": clips} if clips is not None else {}),
    }


def write_manifest(manifest: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "request" not in data:
        raise ValueError(f"{path} is not a vsteer manifest (no `request`)")
    version = data.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest_version must be {MANIFEST_VERSION}, got {version!r}")
    return data
