"""The engine: one steering job from document to files, in-process, with no Celery inside.

The CLI calls it directly; the Celery task calls it with storage-backed images and Redis-backed
progress and cancel. Outputs land in `out_dir`: video.mp4, poster.png, preview.gif|webp,
frames.npy (when `output.raw`), manifest.json.
"""

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from api_schemas import JobRequest
from api_schemas.refs import RefKind, ref_kind
from workers.directions import DirectionResolver
from workers.errors import JobCanceled
from workers.images import ImageResolver
from workers.manifest import build_manifest, describe_file, write_manifest
from workers.memory_plan import check_host_memory
from workers.models import LoadedModel, ModelRegistry
from workers.outputs import finish_outputs, output_threads
from workers.plan import JobPlan, resolve_job
from workers.planning import plan_job_clips
from workers.preview import preview_steps, preview_strip
from workers.segments import describe_chain, run_chain
from workers.settings import EngineSettings, engine_defaults
from workers.text import text_direction
from workers.video_input import load_job_video


@dataclass(frozen=True)
class Progress:
    """Where a job is: `stage` is load, encode, denoise, decode or video; `step` of `total`."""

    stage: str
    step: int
    total: int


@dataclass
class JobOutputs:
    """What a finished job left in its folder. `files` keys: video, poster, preview, manifest, frames."""

    files: dict[str, Path]
    manifest: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preview:
    """A live preview of the denoised estimate after `step` of `total` denoising steps: a JPEG strip of
    a few frames of the first clip (`workers.preview`)."""

    step: int
    total: int
    jpeg: bytes


ProgressSink = Callable[[Progress], None]
PreviewSink = Callable[[Preview], None]


class StageClock:
    """Wall time per stage; waits for the device so GPU work is charged to the stage that queued it."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)


def run_job(
    job: JobRequest,
    out_dir: Path,
    *,
    registry: ModelRegistry,
    images: ImageResolver,
    directions: DirectionResolver | None = None,
    on_progress: ProgressSink | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_preview: PreviewSink | None = None,
    job_id: str | None = None,
    settings: EngineSettings | None = None,
) -> JobOutputs:
    """Run one job to files in `out_dir`; raises JobInputError (JobTooLarge among them), JobCanceled or
    ModelUnavailableError. `settings` give the output threads, the host memory and how many live
    previews `on_preview` gets (the defaults when None); `should_cancel` may raise to stop the job at
    its next step."""
    settings = settings or engine_defaults()
    report = on_progress or (lambda progress: None)
    canceled = should_cancel or (lambda: False)
    started = time.perf_counter()

    # 1. Resolve the document against the model's defaults; choose a seed when none was given.
    model = registry.get(job.model)
    plan = resolve_job(job, model)
    # `text` direction sources read this model's text encoder (a job on a model without one fails naming them).
    directions = (directions or DirectionResolver()).with_text(partial(text_direction, model))
    pipe = model.pipeline
    clock = StageClock(model.device)
    threads = output_threads(settings.output_threads)
    # A job too large for this host fails here, not the worker.
    check_host_memory(plan, pipe, model.device, settings.host_memory_bytes)
    if canceled():
        raise JobCanceled()

    # 2. Read and decode every image the job refers to.
    report(Progress("load", 0, 1))
    with clock("load"):
        decoded, input_record = load_inputs(plan.job, images)
        video = load_job_video(plan, images, decoded, input_record)

    if plan.job.segments is not None:
        # 3-7 for a long video: its segments chained, each planned, denoised, decoded and written in turn.
        chained = (decoded, input_record, directions, out_dir)
        return run_segments(plan, model, *chained, report, canceled, clock, started, job_id)

    # 3. Plan the clips (one, or a sweep's count) through the job's steering operations.
    report(Progress("encode", 0, 1))
    with clock("encode"):
        planned = plan_job_clips(pipe, plan, decoded, directions, video)
    clips = planned.clips

    # 4. Denoise batch by batch, stopping within one step when the job is canceled.
    batches = planned.batches()
    steps = plan.steps
    total = steps * len(batches)
    report(Progress("denoise", 0, total))
    preview_at = preview_steps(total, settings.previews) if on_preview and model.preview else frozenset()
    clip_latents: list[torch.Tensor] = []
    for b, batch in enumerate(batches):
        conditioning, noise, steering = planned.stack(batch)

        def on_step(pipeline: Any, i: int, t: Any, tensors: dict[str, torch.Tensor], b: int = b, steer=steering):
            if steer:
                tensors["latents"] = steer(pipeline, i, tensors["latents"])
            done = b * steps + i + 1
            if done in preview_at and on_preview and model.preview:
                on_preview(Preview(done, total, preview_strip(tensors["denoised"][0], model.preview)))
            report(Progress("denoise", done, total))
            if canceled():
                raise JobCanceled()
            return tensors

        def stop_if_canceled(i: int) -> None:
            if canceled():
                raise JobCanceled()

        with clock("denoise"):
            # A video edit starts part-way, from the clip's latents re-noised (or inverted: UNet calls).
            start = planned.start(batch, conditioning, stop_if_canceled)
            if start is not None and start.step >= steps:  # strength 0: no step runs
                clip_latents.append(start.latents)
                report(Progress("denoise", (b + 1) * steps, total))
                continue
            begin = {} if start is None else {"latents": start.latents, "first_step": start.step}
            clip_latents.append(
                pipe(conditioning, noise, steps, callback_on_step_end=on_step, output_type="latent", **begin)
            )
    latents = torch.cat(clip_latents)

    # 5. Decode each clip's latents to frames in [0, 1].
    report(Progress("decode", 0, 1))
    with clock("decode"):
        frames = pipe.decode(latents, plan.decode_chunk_size)  # (K, F, H, W, 3)

    # 6. Audit each clip's temporal consistency and write the video (a contact sheet for a sweep),
    #    poster, preview, clips and raw frames: CPU work, side by side on the CPU's cores.
    report(Progress("video", 0, 1))
    with clock("outputs"):
        audits, files, tasks = finish_outputs(frames, latents.float().cpu().numpy(), plan.job, out_dir, threads)
    clock.seconds.update(tasks)  # `audit_tasks`, `video_encode_tasks`: seconds their tasks ran, overlapping

    # 7. Write the manifest that reproduces the job.
    clock.seconds["total"] = time.perf_counter() - started
    request = plan.job
    manifest = build_manifest(
        job=request,
        job_id=job_id,
        model=model,
        inputs=input_record,
        seeds={"seed": plan.seed, "variation": request.variation.seed if request.variation else None},
        interpolation=clips[0].report if len(clips) == 1 else {},
        steering={op.name: op.describe(planned.ctx) for op in planned.operations},
        timings=clock.seconds,
        outputs={name: describe_file(path) for name, path in files.items()},
        metrics={"audit": audits[0] if len(audits) == 1 else audits},
        clips=[{"index": c.index, **c.params, "interpolation": c.report} for c in clips] if request.sweep else None,
    )
    files["manifest"] = write_manifest(manifest, out_dir / "manifest.json")
    report(Progress("video", 1, 1))
    metrics = {"timings": clock.seconds, "audit": manifest["metrics"]["audit"], "denoise_steps": total}
    metrics.update(path_metrics([c.report for c in clips]))
    return JobOutputs(files=files, manifest=manifest, metrics=metrics)


def path_metrics(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """What a job's embedding path was, for its result's metrics (the manifest has every clip's report):
    `{"interpolation": {"interpolation_used", "corpus", "fallback"}}` when a clip interpolated the CLIP
    embeddings (a keyframe morph, an image sweep), so a `geodesic` job that fell back to slerp says so
    in the response too; nothing otherwise."""
    for report in reports:
        embedding = report.get("embedding") or {}
        if "interpolation_used" in embedding:
            found = {"interpolation_used": embedding["interpolation_used"], "corpus": report.get("corpus")}
            if "fallback" in embedding:
                found["fallback"] = embedding["fallback"]
            return {"interpolation": found}
    return {}


def run_segments(
    plan: JobPlan,
    model: LoadedModel,
    decoded: dict[str, PIL.Image.Image],
    input_record: dict[str, Any],
    directions: DirectionResolver | None,
    out_dir: Path,
    report: ProgressSink,
    canceled: Callable[[], bool],
    clock: StageClock,
    started: float,
    job_id: str | None,
) -> JobOutputs:
    """A job with `segments` from its decoded images to its files and manifest (`workers.segments`):
    progress counts the denoising steps of every segment; decoding and writing happen per segment
    inside the `denoise` stage, so the percent never goes back."""

    def on_step(done: int, total: int) -> None:
        report(Progress("denoise", done, total))
        if canceled():
            raise JobCanceled()

    with clock("denoise"):
        chain = run_chain(model.pipeline, plan, decoded, directions, out_dir, on_step)
    report(Progress("video", 0, 1))
    clock.seconds["total"] = time.perf_counter() - started
    first = chain.first
    manifest = build_manifest(
        job=plan.job,
        job_id=job_id,
        model=model,
        inputs=input_record,
        seeds={"seed": plan.seed, "segments": [record.seed for record in chain.segments]},
        interpolation=first.clips[0].report,
        steering={op.name: op.describe(first.ctx) for op in first.operations},
        timings=clock.seconds,
        outputs={name: describe_file(path) for name, path in chain.files.items()},
        metrics={"audit": chain.audit},
    )
    manifest["segments"] = describe_chain(plan, chain)
    files = dict(chain.files)
    files["manifest"] = write_manifest(manifest, out_dir / "manifest.json")
    report(Progress("video", 1, 1))
    metrics = {"timings": clock.seconds, "audit": chain.audit, **path_metrics([first.clips[0].report])}
    return JobOutputs(files=files, manifest=manifest, metrics=metrics)


def load_inputs(job: JobRequest, images: ImageResolver) -> tuple[dict[str, PIL.Image.Image], dict[str, Any]]:
    """Decode every image of the job (`JobRequest.image_refs`), by field path; record each one's
    reference and sha256 for the manifest."""
    decoded: dict[str, PIL.Image.Image] = {}
    record: dict[str, Any] = {}
    for where, ref in job.image_refs():
        data = images.read(ref, where)
        record[where] = {
            "ref": ref if ref_kind(ref) is not RefKind.data else f"data:…({len(data)} bytes)",
            "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
        }
        decoded[where] = images.decode(data, where)
    return decoded, record


def warm_up_job(
    registry: ModelRegistry, name: str | None = None, steps: int = 2, settings: EngineSettings | None = None
) -> float:
    """Run one small job end to end at the model's default shape, so that first use of every stage
    (image encoders, the audit's optical flow, the H.264 and preview encoders) happens at worker start
    and not in the first job. Returns its seconds."""
    import base64
    import io
    import tempfile

    gradient = np.linspace(0, 255, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3).astype(np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(gradient).save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    job = JobRequest.model_validate({"model": name, "seed": 0, "image": image, "generation": {"steps": steps}})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vsteer-warm-up-") as tmp:
        run_job(job, Path(tmp), registry=registry, images=ImageResolver(), settings=settings)
    return time.perf_counter() - started
