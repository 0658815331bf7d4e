"""The job runner: one steering job from document to files, in-process, with no Celery inside.

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

from api_schemas import JobRequest
from api_schemas.refs import RefKind, ref_kind
from steering.interpolate import slerp
from workers.conditioning import Inputs, build_conditioning
from workers.errors import JobCanceled, JobInputError
from workers.images import ImageResolver
from workers.manifest import build_manifest, describe_file, write_manifest
from workers.models import LoadedModel, ModelRegistry
from workers.pipeline import Noise, SteerableVideoPipeline
from workers.video import write_mp4, write_poster, write_preview


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
            torch.cuda.synchronize()


def run_job(
    job: JobRequest,
    out_dir: Path,
    *,
    registry: ModelRegistry,
    images: ImageResolver,
    on_progress: ProgressSink | None = None,
    should_cancel: Callable[[], bool] | None = None,
    job_id: str | None = None,
) -> JobOutputs:
    """Run one job to files in `out_dir`; raises JobInputError, JobCanceled or ModelUnavailableError."""
    report = on_progress or (lambda progress: None)
    canceled = should_cancel or (lambda: False)
    started = time.perf_counter()

    # 1. Resolve the document against the model's defaults; choose a seed when none was given.
    model = registry.get(job.model)
    job = resolve_job(job, model)
    check_supported(job)
    pipe = model.pipeline
    clock = StageClock(model.device)
    if canceled():
        raise JobCanceled()

    # 2. Read and decode every image the job refers to.
    report(Progress("load", 0, 1))
    with clock("load"):
        inputs, input_record = load_inputs(job, images)

    # 3. Draw the noise: the job's seed, then the variation's.
    report(Progress("encode", 0, 1))
    with clock("encode"):
        noise = draw_noise(pipe, job)
        conditioning, interpolation = build_conditioning(pipe, job, inputs, noise)

    # 4. Denoise, stopping within one step when the job is canceled.
    steps = job.generation.steps
    report(Progress("denoise", 0, steps))

    def on_step(
        pipeline: Any, i: int, t: torch.Tensor, tensors: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        report(Progress("denoise", i + 1, steps))
        if canceled():
            raise JobCanceled()
        return tensors

    with clock("denoise"):
        latents = pipe(conditioning, noise.latents, steps, callback_on_step_end=on_step, output_type="latent")

    # 5. Decode the latents to frames in [0, 1].
    report(Progress("decode", 0, 1))
    with clock("decode"):
        frames = pipe.decode(latents, job.generation.decode_chunk_size)[0]

    # 6. Write the video, the poster, the preview and, when asked, the raw frames.
    report(Progress("video", 0, 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    with clock("video_encode"):
        files = write_outputs(frames, job, out_dir)

    # 7. Write the manifest that reproduces the job.
    clock.seconds["total"] = time.perf_counter() - started
    manifest = build_manifest(
        job=job,
        job_id=job_id,
        model=model,
        inputs=input_record,
        seeds={"seed": job.seed, "variation": job.variation.seed if job.variation else None},
        interpolation=interpolation,
        timings=clock.seconds,
        outputs={name: describe_file(path) for name, path in files.items()},
    )
    files["manifest"] = write_manifest(manifest, out_dir / "manifest.json")
    report(Progress("video", 1, 1))
    return JobOutputs(files=files, manifest=manifest, metrics={"timings": clock.seconds})


def resolve_job(job: JobRequest, model: LoadedModel) -> JobRequest:
    """The document with every default made explicit: model, seed, frames, size, chunking, fps."""
    gen = job.generation
    num_frames = gen.num_frames or model.defaults["num_frames"]
    generation = gen.model_copy(
        update={
            "num_frames": num_frames,
            "width": gen.width or model.defaults["width"],
            "height": gen.height or model.defaults["height"],
            "decode_chunk_size": gen.decode_chunk_size or num_frames,
        }
    )
    output = job.output.model_copy(update={"fps": job.output.fps or gen.fps})
    seed = job.seed if job.seed is not None else secrets.randbelow(2**63)
    return job.model_copy(
        update={"model": model.spec.name, "seed": seed, "generation": generation, "output": output}
    )


def check_supported(job: JobRequest) -> None:
    """Fields the schema accepts that this engine does not run yet fail the job clearly."""
    for name in ("directions", "style", "sweep"):
        if getattr(job, name):
            raise JobInputError(name, f"`{name}` is not supported by this engine yet")


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
    )
    return inputs, record


def draw_noise(pipe: SteerableVideoPipeline, job: JobRequest) -> Noise:
    """The seed's draws in diffusers' order; a variation slerps the latents toward a second seed's."""
    gen = job.generation
    assert job.seed is not None and gen.num_frames and gen.height and gen.width
    device = pipe._execution_device
    noise = pipe.draw_noise(
        torch.Generator(device).manual_seed(job.seed), gen.num_frames, gen.height, gen.width
    )
    if job.variation is not None:
        other = pipe.draw_noise(
            torch.Generator(device).manual_seed(job.variation.seed), gen.num_frames, gen.height, gen.width
        )
        noise.latents = slerp(noise.latents, other.latents, job.variation.strength)
    return noise


def write_outputs(frames: np.ndarray, job: JobRequest, out_dir: Path) -> dict[str, Path]:
    """video.mp4, poster.png, the preview and, with `output.raw`, frames.npy (F x H x W x 3 float32)."""
    out = job.output
    assert out.fps is not None
    files = {
        "video": out_dir / "video.mp4",
        "poster": out_dir / "poster.png",
    }
    write_mp4(frames, files["video"], fps=out.fps, crf=out.crf)
    write_poster(frames, files["poster"])
    if out.preview != "none":
        files["preview"] = out_dir / f"preview.{out.preview}"
        write_preview(frames, files["preview"], fps=out.fps, fmt=out.preview)
    if out.raw:
        files["frames"] = out_dir / "frames.npy"
        np.save(files["frames"], frames.astype(np.float32, copy=False))
    return files
