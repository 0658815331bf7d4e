"""A comparison's side-by-side: its succeeded children's videos in one labelled MP4, a PNG contact
sheet and the table of each child's audit figures and timings.

Runs on a CPU worker (`workers.cpu_app`): it decodes and encodes video, and needs no model. It reads
only what the children stored (each child's video and manifest) and writes the same keys each time
(`storage.keys.comparison_key`), so a redelivered task writes the same objects again.

Alignment: the children may differ in frame count and frame rate. The side-by-side runs at the
highest frame rate for the longest duration; at output frame i (time t = i / fps) each column shows
its clip's frame ⌊t · fps_k⌋, its last frame once it has ended. Each clip is centred in a cell of
the largest width and height (black padding), under a bar with its model's name; the side-by-side's
width is the number of columns times the cell width.
"""

import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from api_schemas import JobStatus
from api_schemas.comparisons import ComparisonRow
from jobstate.comparisons import COMPARISON_FILES, ComparisonRecord, finish_comparison_op, get_comparison_op
from jobstate.records import JobRecord, StoredArtifact
from jobstate.store import JobStore, failure
from storage.base import Storage
from storage.keys import comparison_key
from workers.video import probe, read_frames, to_uint8, write_mp4

log = logging.getLogger(__name__)

LABEL_HEIGHT = 16
CONTACT_SHEET_ROWS = 4
_LABEL_BG = (32, 32, 32)
_LABEL_FG = (255, 255, 255)


@dataclass(frozen=True)
class Clip:
    """One column: the model's name, its frames (F×H×W×3 uint8) and their frame rate."""

    label: str
    frames: np.ndarray
    fps: float


def cell_size(clips: Sequence[Clip]) -> tuple[int, int]:
    """(height, width) of every cell: the largest clip, label bar included, rounded up to even."""
    height = LABEL_HEIGHT + max(c.frames.shape[1] for c in clips)
    width = max(c.frames.shape[2] for c in clips)
    return height + height % 2, width + width % 2


def label_bar(text: str, width: int) -> np.ndarray:
    """A LABEL_HEIGHT × width × 3 bar with `text` on it (PIL's built-in font)."""
    image = Image.new("RGB", (width, LABEL_HEIGHT), _LABEL_BG)
    ImageDraw.Draw(image).text((3, 2), text, fill=_LABEL_FG)
    return np.asarray(image)


def side_by_side(clips: Sequence[Clip]) -> tuple[np.ndarray, float]:
    """The labelled, padded, time-aligned columns as F'×H'×W'×3 uint8 frames, and their frame rate."""
    if not clips:
        raise ValueError("a side-by-side needs at least one clip")
    fps = max(c.fps for c in clips)
    duration = max(len(c.frames) / c.fps for c in clips)
    count = max(1, round(duration * fps))
    cell_h, cell_w = cell_size(clips)
    out = np.zeros((count, cell_h, cell_w * len(clips), 3), dtype=np.uint8)
    times = np.arange(count) / fps
    for k, clip in enumerate(clips):
        left = k * cell_w
        out[:, :LABEL_HEIGHT, left : left + cell_w] = label_bar(clip.label, cell_w)
        _, h, w, _ = clip.frames.shape
        top = LABEL_HEIGHT + (cell_h - LABEL_HEIGHT - h) // 2
        x = left + (cell_w - w) // 2
        # 1e-9: a time that is a whole frame of this clip must not round down to the one before.
        index = np.minimum(np.floor(times * clip.fps + 1e-9).astype(int), len(clip.frames) - 1)
        out[:, top : top + h, x : x + w] = clip.frames[index]
    return out, fps


def contact_sheet_image(frames: np.ndarray, rows: int = CONTACT_SHEET_ROWS) -> np.ndarray:
    """`rows` frames of the side-by-side, evenly spaced in time from first to last, stacked top to bottom."""
    picks = np.unique(np.linspace(0, len(frames) - 1, num=min(rows, len(frames))).round().astype(int))
    return np.concatenate(list(frames[picks]), axis=0)


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def table_row(model: str, job_id: str, child: JobRecord | None, manifest: dict[str, Any] | None) -> ComparisonRow:
    """The child's line: what it rendered (from its manifest), its audit figures and its timings."""
    if child is None:
        problem = failure("Child missing", f"child job {job_id} of model {model!r} was not created, or was deleted")
        return ComparisonRow(model=model, job_id=job_id, status=JobStatus.failed, error=problem)
    row: dict[str, Any] = {"model": model, "job_id": job_id, "status": child.status, "error": child.error}
    if manifest is not None:
        request = manifest.get("request", {})
        generation = request.get("generation", {})
        row |= {k: generation.get(k) for k in ("num_frames", "width", "height")}
        row["fps"] = request.get("output", {}).get("fps")
    metrics = child.result.metrics if child.result is not None else {}
    audits = metrics.get("audit")
    audits = [audits] if isinstance(audits, dict) else list(audits or [])
    if audits:
        row["flicker"] = _mean([a["flicker"] for a in audits])
        row["warp_error"] = _mean([a["warp_error_mean"] for a in audits])
        row["flagged_frames"] = sorted({f for a in audits for f in a.get("flagged_frames", [])})
    row["timings"] = {k: float(v) for k, v in (metrics.get("timings") or {}).items()}
    return ComparisonRow(**row)


def _put(storage: Storage, key: str, path: Path, content_type: str) -> StoredArtifact:
    info = storage.put(key, path, content_type)
    return StoredArtifact(key=key, content_type=content_type, bytes=info.size, sha256=info.sha256)


def compose_comparison(store: JobStore, storage: Storage, tenant: str, comparison_id: str) -> str:
    """Make and store the comparison's side-by-side, contact sheet and table, and record the outcome.
    Returns what happened: `composed`, `failed`, or `gone` / `done` when there is nothing to do."""
    # 1. read the comparison and its children
    comparison: ComparisonRecord | None = store.run(get_comparison_op(tenant, comparison_id))
    if comparison is None:
        return "gone"
    if comparison.compose != "queued":
        return "done"  # a redelivery after the outcome was recorded
    children = [store.get(tenant, c.job_id) for c in comparison.children]
    try:
        result = _compose(storage, comparison, children)
    except Exception as exc:
        log.exception("comparison %s: the side-by-side could not be made", comparison_id)
        problem = failure("Composition failed", f"the side-by-side could not be made: {exc}")
        store.run(finish_comparison_op(tenant, comparison_id, error=problem))
        return "failed"
    store.run(finish_comparison_op(tenant, comparison_id, result=result))
    return "composed"


def _compose(storage: Storage, comparison: ComparisonRecord, children: list[JobRecord | None]) -> dict[str, Any]:
    tenant, ident = comparison.tenant, comparison.id
    with tempfile.TemporaryDirectory(prefix="vsteer-compare-") as tmp:
        folder = Path(tmp)
        # 2. fetch each succeeded child's video and manifest; build the table
        clips: list[Clip] = []
        rows: list[ComparisonRow] = []
        for child_ref, child in zip(comparison.children, children, strict=True):
            manifest = None
            if child is not None and child.status is JobStatus.succeeded and child.result is not None:
                manifest = _manifest(storage, child)
                video = child.result.video
                if video is not None:
                    path = folder / f"{child.id}.mp4"
                    path.write_bytes(storage.get(video.key))
                    fps = float((manifest or {}).get("request", {}).get("output", {}).get("fps") or 0) or _fps(path)
                    clips.append(Clip(child_ref.model, to_uint8(read_frames(path)), fps))
            rows.append(table_row(child_ref.model, child_ref.job_id, child, manifest))
        if not clips:
            raise ValueError("no child left a video")
        # 3. the side-by-side, the contact sheet and the table
        frames, fps = side_by_side(clips)
        video_path = folder / COMPARISON_FILES["video"]
        write_mp4(frames, video_path, fps=fps)
        sheet_path = folder / COMPARISON_FILES["contact_sheet"]
        Image.fromarray(contact_sheet_image(frames)).save(sheet_path, format="PNG")
        table = [row.model_dump(mode="json") for row in rows]
        table_path = folder / COMPARISON_FILES["table"]
        table_path.write_text(json.dumps(table, indent=2) + "\n")
        # 4. store them under the comparison's keys
        stored = {
            "video": _put(storage, comparison_key(tenant, ident, video_path.name), video_path, "video/mp4"),
            "contact_sheet": _put(storage, comparison_key(tenant, ident, sheet_path.name), sheet_path, "image/png"),
            "table_file": _put(storage, comparison_key(tenant, ident, table_path.name), table_path, "application/json"),
        }
    return {name: a.model_dump() for name, a in stored.items()} | {"table": table}


def _manifest(storage: Storage, child: JobRecord) -> dict[str, Any] | None:
    stored = child.result.manifest if child.result is not None else None
    if stored is None:
        return None
    manifest: dict[str, Any] = json.loads(storage.get(stored.key))
    return manifest


def _fps(path: Path) -> float:
    fps = probe(path).fps
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{path.name} has no frame rate")
    return fps
