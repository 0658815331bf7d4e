"""A direction fit as a worker runs it: the tenant's example images in, encoded with the model's own
encoders, a set of directions fitted, each stored where jobs read it, and the fit's manifest out.

A fit is a job on the model's queue (`api_schemas.directions.DirectionFitRequest` as its document), so
it has everything a job has: the lease and the reaper, cancel, the time limit, webhooks, retention.
It is as safe to deliver twice as a job: its directions' ids are the fit's id and an index, so a run
again writes the same keys, and their records are written once the files are in storage.
"""

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from api_schemas.directions import DirectionFitRequest, DirectionResource
from jobstate.directions import put_directions
from jobstate.records import JobRecord, StoredResult
from storage.keys import direction_key
from workers.errors import JobCanceled, JobInputError
from workers.images import ImageResolver

if TYPE_CHECKING:
    from workers.engine import Progress
    from workers.fitting import FittedSet
    from workers.job_runner import WorkerDeps


REPORT_EVERY_S = 0.1
"""How often an encoding fit reports its progress and checks for a cancel (and always at its end)."""


def fitted_direction_id(job_id: str, index: int) -> str:
    """The id of a fit's `index`-th direction: the same on every run of the fit."""
    return f"dir_{job_id.removeprefix('job_')}_{index}"


def direction_name(name: str | None, index: int, count: int) -> str | None:
    """A fitted direction's name: the set's own for a set of one, `<name> <index>` in a larger set."""
    if name is None:
        return None
    return name if count == 1 else f"{name} {index}"


def run_fit(
    record: JobRecord,
    deps: "WorkerDeps",
    out_dir: Path,
    *,
    on_progress: Callable[["Progress"], None],
    should_cancel: Callable[[], bool],
    fetch_asset: Callable[[str], bytes],
) -> StoredResult:
    """Fit the record's directions, store them, and return the fit's result (its manifest and directions)."""
    from workers.engine import Progress
    from workers.fitting import encode_images, fitted_bytes
    from workers.job_runner import put_with_retries, upload_outputs

    request = DirectionFitRequest.model_validate(record.request)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    on_progress(Progress("load", 0, 1))
    loaded = deps.registry.get(request.model)
    on_progress(Progress("load", 1, 1))
    timings["load"] = time.perf_counter() - started

    # 1. the examples, encoded one by one (progress, and a cancel between images)
    started = time.perf_counter()
    refs = request.asset_refs()
    images = ImageResolver(fetch_asset=fetch_asset)
    width = request.width or loaded.defaults["width"]
    height = request.height or loaded.defaults["height"]
    rows, inputs = [], []
    reported = 0.0
    for done, (field, ref) in enumerate(refs, start=1):
        data = images.read(ref, field)
        inputs.append({"field": field, "ref": ref, "sha256": hashlib.sha256(data).hexdigest()})
        rows.append(encode_images(loaded, [images.decode(data, field)], request.space, width, height)[0])
        # job state hears of it every REPORT_EVERY_S and at the end (a step of a small encoder is a
        # few milliseconds: a Redis round trip or two for each would be a tenth of the fit)
        if done == len(refs) or time.monotonic() - reported >= REPORT_EVERY_S:
            reported = time.monotonic()
            if should_cancel():
                raise JobCanceled()
            on_progress(Progress("encode", done, len(refs)))
    timings["encode"] = time.perf_counter() - started

    # 2. the fit
    if should_cancel():
        raise JobCanceled()
    started = time.perf_counter()
    on_progress(Progress("fit", 0, 1))
    fitted = _fit(request, loaded, rows)
    on_progress(Progress("fit", 1, 1))
    timings["fit"] = time.perf_counter() - started

    # 3. each direction where jobs read it, then the records that list them
    now = datetime.now(UTC)
    resources = []
    for index in range(len(fitted.vectors)):
        direction_id = fitted_direction_id(record.id, index)
        data = fitted_bytes(fitted, index)  # with its attribute predictor, for a supervised fit
        put_with_retries(deps, direction_key(record.tenant, direction_id), data, "application/octet-stream")
        resources.append(
            DirectionResource(
                id=direction_id,
                name=direction_name(request.name, index, len(fitted.vectors)),
                model=request.model,
                space=request.space,
                dimension=int(fitted.vectors[index].numel()),
                method=request.method,
                sha256=hashlib.sha256(data).hexdigest(),
                created_at=now,
                fit=fitted.stats[index],
                leakage=fitted.leakage,
                fitted_by=record.id,
            )
        )
    put_directions(deps.store.redis, record.tenant, resources)

    # 4. the manifest: what went in, with what model, and what came out
    directions = [r.model_dump(mode="json") for r in resources]
    report = {"fit": fitted.stats, "leakage": fitted.leakage}
    manifest: dict[str, Any] = {
        "kind": "direction_fit",
        "fit_id": record.id,
        "request": request.model_dump(mode="json", exclude_none=True),
        "model": loaded.describe(),
        "size": {"width": width, "height": height} if request.space == "latent" else None,
        "inputs": inputs,
        "directions": [{"id": r.id, "sha256": r.sha256, "dimension": r.dimension} for r in resources],
        "report": report,
        "timings": timings,
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    metrics = {"directions": directions, "report": report, "timings": timings}
    return upload_outputs(deps, record, {"manifest": path}, out_dir, metrics)


def _fit(request: DirectionFitRequest, loaded: Any, rows: list[torch.Tensor]) -> "FittedSet":
    """The method's directions from the encoded examples (or, for `text`, from the two prompts)."""
    from workers.fitting import FittedSet, fit

    attributes = {k: torch.tensor(v, dtype=torch.float64) for k, v in (request.attributes or {}).items()} or None
    try:
        if request.method == "text":
            from steering.disentanglement import not_measured
            from workers.text import text_direction

            vector = text_direction(loaded, request.text or "", request.from_text or "")
            stats = [{"text": request.text, "from_text": request.from_text or ""}]
            return FittedSet(vectors=vector[None].float(), stats=stats, leakage=not_measured())
        X = torch.stack(rows)
        if request.method == "contrastive":
            from steering.disentanglement import attribute_report

            half = len(X) // 2  # the pairs' first images, then their second images
            fitted = fit("contrastive", X[half:], X_b=X[:half], seed=request.seed)
            if attributes:
                fitted.leakage = attribute_report(fitted.vectors, X, attributes, seed=request.seed).to_dict()
            return fitted
        labels = torch.tensor(request.labels, dtype=torch.float64) if request.labels is not None else None
        return fit(request.method, X, k=request.k, labels=labels, attributes=attributes, seed=request.seed)
    except ValueError as exc:
        field = {"text": "text", "contrastive": "pairs"}.get(request.method, "images")
        raise JobInputError(field, str(exc)) from exc
