"""The engine: one steering job from document to files, in-process, with no Celery inside.

The CLI calls it directly; the Celery task calls it with storage-backed images and Redis-backed
progress and cancel. Outputs land in `out_dir`: video.mp4, poster.png, preview.gif|webp,
frames.npy (when `output.raw`), manifest.json.
"""

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from api_schemas import JobRequest, SweepTarget
from api_schemas.refs import RefKind, ref_kind
from workers.clips import Clip, plan_clips, stack_clips
from workers.conditioning import Inputs
from workers.directions import DirectionResolver
from workers.errors import JobCanceled
from workers.images import ImageResolver
from workers.manifest import build_manifest, describe_file, write_manifest
from workers.memory_plan import check_host_memory
from workers.models import LoadedModel, ModelRegistry
from workers.outputs import finish_outputs, output_threads
from workers.settings import EngineSettings, engine_defaults


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


ProgressSink = Callable[[Progress], None]


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
    job_id: str | None = None,
    settings: EngineSettings | None = None,
) -> JobOutputs:
    """Run one job to files in `out_dir`; raises JobInputError (JobTooLarge among them), JobCanceled or
    ModelUnavailableError. `settings` give the output threads and the host memory (the defaults when
    None); `should_cancel` may raise to stop the job at its next step."""
    settings = settings or engine_defaults()
    report = on_progress or (lambda progress: None)
    canceled = should_cancel or (lambda: False)
    started = time.perf_counter()

    # 1. Resolve the document against the model's defaults; choose a seed when none was given.
    model = registry.get(job.model)
    job = resolve_job(job, model)
    pipe = model.pipeline
    clock = StageClock(model.device)
    threads = output_threads(settings.output_threads)
    # A job too large for this host fails here, not the worker.
    check_host_memory(job, pipe, model.device, settings.host_memory_bytes)
    if canceled():
        raise JobCanceled()

    # 2. Read and decode every image the job refers to.
    report(Progress("load", 0, 1))
    with clock("load"):
        inputs, input_record = load_inputs(job, images)

    # 3. Plan the clips (one, or a sweep's count): noise, conditioning, latent edits.
    report(Progress("encode", 0, 1))
    with clock("encode"):
        clips, style = plan_clips(pipe, job, inputs, directions or DirectionResolver())

    # 4. Denoise batch by batch, stopping within one step when the job is canceled.
    batches = batched(clips, batch_size(job, len(clips)))
    steps = job.generation.steps
    total = steps * len(batches)
    report(Progress("denoise", 0, total))
    clip_latents: list[torch.Tensor] = []
    for b, batch in enumerate(batches):
        conditioning, noise, steering = stack_clips(batch, style)

        def on_step(pipeline: Any, i: int, t: Any, tensors: dict[str, torch.Tensor], b: int = b, steer=steering):
            if steer:
                tensors["latents"] = steer(pipeline, i, tensors["latents"])
            report(Progress("denoise", b * steps + i + 1, total))
            if canceled():
                raise JobCanceled()
            return tensors

        with clock("denoise"):
            clip_latents.append(pipe(conditioning, noise, steps, callback_on_step_end=on_step, output_type="latent"))
    latents = torch.cat(clip_latents)

    # 5. Decode each clip's latents to frames in [0, 1].
    report(Progress("decode", 0, 1))
    with clock("decode"):
        frames = pipe.decode(latents, job.generation.decode_chunk_size)  # (K, F, H, W, 3)

    # 6. Audit each clip's temporal consistency and write the video (a contact sheet for a sweep),
    #    poster, preview, clips and raw frames: CPU work, side by side on the CPU's cores.
    report(Progress("video", 0, 1))
    with clock("outputs"):
        audits, files, tasks = finish_outputs(frames, latents.float().cpu().numpy(), job, out_dir, threads)
    clock.seconds.update(tasks)  # `audit_tasks`, `video_encode_tasks`: seconds their tasks ran, overlapping

    # 7. Write the manifest that reproduces the job.
    clock.seconds["total"] = time.perf_counter() - started
    manifest = build_manifest(
        job=job,
        job_id=job_id,
        model=model,
        inputs=input_record,
        seeds={"seed": job.seed, "variation": job.variation.seed if job.variation else None},
        interpolation=clips[0].report if len(clips) == 1 else {},
        timings=clock.seconds,
        outputs={name: describe_file(path) for name, path in files.items()},
        metrics={"audit": audits[0] if len(audits) == 1 else audits},
        clips=[{"index": c.index, **c.params, "interpolation": c.report} for c in clips] if job.sweep else None,
    )
    files["manifest"] = write_manifest(manifest, out_dir / "manifest.json")
    report(Progress("video", 1, 1))
    metrics = {"timings": clock.seconds, "audit": manifest["metrics"]["audit"]}
    return JobOutputs(files=files, manifest=manifest, metrics=metrics)


def batch_size(job: JobRequest, count: int) -> int:
    """Clips per UNet batch: the sweep's (resolved by `resolve_job`), one for a single clip."""
    return job.sweep.batch_size or count if job.sweep else 1


def batched(clips: list[Clip], size: int) -> list[list[Clip]]:
    return [clips[i : i + size] for i in range(0, len(clips), size)]


def resolve_job(job: JobRequest, model: LoadedModel) -> JobRequest:
    """The document with every default made explicit: model, seed, frames, size, decode chunk, fps and
    a sweep's clips per batch."""
    gen = job.generation
    num_frames = gen.num_frames or model.defaults["num_frames"]
    height, width = model.defaults["height"], model.defaults["width"]
    generation = gen.model_copy(
        update={
            "num_frames": num_frames,
            "width": gen.width or model.defaults["width"],
            "height": gen.height or model.defaults["height"],
            # Unset: all frames on the CPU (as diffusers does), as many as fit in free memory on CUDA.
            "decode_chunk_size": gen.decode_chunk_size
            or model.pipeline.decode_chunk_for(num_frames, gen.height or height, gen.width or width),
        }
    )
    output = job.output.model_copy(update={"fps": job.output.fps or gen.fps})
    seed = job.seed if job.seed is not None else secrets.randbelow(2**63)
    update = {"model": model.spec.name, "seed": seed, "generation": generation, "output": output}
    if job.sweep is not None and job.sweep.batch_size is None:
        # Unset: every clip at once on the CPU; on CUDA as many as fit in free memory.
        size = generation.num_frames, generation.height, generation.width
        batch = model.pipeline.denoise_batch_for(job.sweep.count, *size)
        update["sweep"] = job.sweep.model_copy(update={"batch_size": batch})
    return job.model_copy(update=update)


def load_inputs(job: JobRequest, images: ImageResolver) -> tuple[Inputs, dict[str, Any]]:
    """Decode the job's images by role; record each one's reference and sha256 for the manifest."""
    record: dict[str, Any] = {}

    def open_image(ref: str, where: str) -> Any:
        data = images.read(ref, where)
        record[where] = {
            "ref": ref if ref_kind(ref) is not RefKind.data else f"data:…({len(data)} bytes)",
            "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
        }
        return images.decode(data, where)

    if job.keyframes is not None:
        keyframes = [open_image(k.image, f"keyframes[{i}].image") for i, k in enumerate(job.keyframes)]
        positions = [k.at for k in job.keyframes]
    else:
        assert job.image is not None
        keyframes, positions = [open_image(job.image, "image")], [0.0]
    inputs = Inputs(
        keyframes=keyframes,
        keyframe_positions=positions,
        references=[open_image(r.image, f"references[{i}].image") for i, r in enumerate(job.references)],
        reference_weights=[r.weight for r in job.references],
        negative=open_image(job.negative_image, "negative_image") if job.negative_image else None,
        style=open_image(job.style.image, "style.image") if job.style else None,
        sweep_image=(
            open_image(str(job.sweep.to), "sweep.to")
            if job.sweep is not None and job.sweep.target is SweepTarget.image
            else None
        ),
    )
    return inputs, record


def warm_up_job(
    registry: ModelRegistry, name: str | None = None, steps: int = 2, settings: EngineSettings | None = None
) -> float:
    """Run one small job end to end at the model's default shape, so that first use of every stage
    (image encoders, the audit's optical flow, the H.264 and preview encoders) happens at worker start
    and not in the first job. Returns its seconds."""
    import base64
    import io
    import tempfile

    import PIL.Image

    gradient = np.linspace(0, 255, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3).astype(np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(gradient).save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    job = JobRequest.model_validate({"model": name, "seed": 0, "image": image, "generation": {"steps": steps}})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vsteer-warm-up-") as tmp:
        run_job(job, Path(tmp), registry=registry, images=ImageResolver(), settings=settings)
    return time.perf_counter() - started
