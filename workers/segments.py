"""`segments: {count, overlap, blend, images}`: a video longer than one clip, chained segment by segment.

Segment 0 is the job as written. Segment k + 1 is the same job with:

1. the seed `seed + k + 1` (each segment's own seeded noise, recorded in the manifest);
2. as its conditioning image, the decoded frame of segment k that its own first frame stands on (8-bit,
   as a PNG of it would hold it): frame F − overlap, the last one without overlap (SVD makes a clip's
   first frame its conditioning image, so any other frame would make the picture jump at the seam);
   or with a storyboard (`images`) the keyframes [that frame at 0, images[k] at 1] and the job's
   `interpolation`;
3. its first `overlap` latent frames starting from segment k's last `overlap` clean latents re-noised
   with its own noise at the first sigma (x = z + σ·ε, as the pipeline's given latents are), the others
   from its noise as a plain job's;
4. after denoising, those frames blended with segment k's (`steering.segments`, `blend` weights).

Every other field (references, directions, style, negative image, generation) applies to each segment
through the same steering operations. Segments are decoded and written to the MP4 one by one: the host
holds one segment's frames, the encoder, and the preview's small frames; a segment's last `overlap`
frames wait for the next segment's blend and are never written (the blended ones are), so the video
has count·F − (count − 1)·overlap frames.
"""

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from api_schemas import JobRequest, KeyframeInterpolation
from api_schemas.job import MAX_SEED
from steering.segments import blend_overlap, overlap_weights
from workers.audit import audit_frames, to_luma
from workers.directions import DirectionResolver
from workers.errors import JobInputError
from workers.pipeline import SteerableVideoPipeline
from workers.plan import JobPlan
from workers.planning import PlannedJob, plan_job_clips
from workers.video import Mp4Writer, preview_size, to_uint8, write_poster, write_preview


@dataclasses.dataclass
class SegmentRecord:
    """What the manifest says of one segment: its seed, its frames in the video [start, end), seconds."""

    index: int
    seed: int
    frames: tuple[int, int]
    seconds: float
    interpolation: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "frames": list(self.frames),
            "seconds": round(self.seconds, 6),
            "interpolation": self.interpolation,
        }


@dataclasses.dataclass
class ChainResult:
    """A chained video's files, its first segment's plan (for the manifest's steering), each segment's
    record and audit, and the seams' scores."""

    files: dict[str, Path]
    first: PlannedJob
    segments: list[SegmentRecord]
    audit: dict[str, Any]


def segment_seed(seed: int, index: int) -> int:
    """Segment `index`'s seed: the job's seed plus the index, wrapped at 2**63."""
    return (seed + index) % (MAX_SEED + 1)


def segment_job(
    plan: JobPlan, index: int, start_frame: PIL.Image.Image | None, images: dict[str, PIL.Image.Image]
) -> tuple[JobPlan, dict[str, PIL.Image.Image]]:
    """Segment `index`'s plan and images by field path (see the module's steps 1 and 2)."""
    job = plan.job
    segments = job.segments
    assert segments is not None
    seed = segment_seed(plan.seed, index)
    if index == 0:
        return dataclasses.replace(plan, job=job.model_copy(update={"segments": None}), seed=seed), images
    if start_frame is None:
        raise ValueError("a later segment needs the frame of the previous segment it starts on")
    doc = job.dump()
    doc.update(segments=None, seed=seed)
    # The image fields keep a reference of the job's own (any valid one): `images` says what they hold.
    placeholder = job.image or (job.keyframes or [])[0].image
    shared = {path: image for path, image in images.items() if not path.startswith(("image", "keyframes"))}
    if segments.images is None:
        doc.update(image=placeholder, keyframes=None, interpolation=str(KeyframeInterpolation.slerp))
        paths = {"image": start_frame}
    else:
        target = segments.images[index - 1]
        doc.update(image=None, keyframes=[{"image": placeholder, "at": 0.0}, {"image": target, "at": 1.0}])
        paths = {"keyframes[0].image": start_frame, "keyframes[1].image": images[f"segments.images[{index - 1}]"]}
    sub = JobRequest.model_validate(doc)
    return dataclasses.replace(plan, job=sub, seed=seed), {**shared, **paths}


def run_chain(
    pipe: SteerableVideoPipeline,
    plan: JobPlan,
    images: dict[str, PIL.Image.Image],
    directions: DirectionResolver | None,
    out_dir: Path,
    on_step: Callable[[int, int], None],
) -> ChainResult:
    """Denoise, decode and write every segment in turn. `on_step(done, total)` is called after each
    denoising step of the whole chain (it may raise JobCanceled to stop it)."""
    segments = plan.job.segments
    assert segments is not None
    count, overlap, steps, frames_per = segments.count, segments.overlap, plan.steps, plan.num_frames
    if overlap >= frames_per:
        raise JobInputError(
            "segments.overlap",
            f"`segments.overlap` must be less than the job's {frames_per} frames, got {overlap}",
        )
    weights = overlap_weights(overlap, str(segments.blend))
    out = plan.job.output
    fps = out.fps or plan.fps
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"video": out_dir / "video.mp4", "poster": out_dir / "poster.png"}
    total_frames = count * frames_per - (count - 1) * overlap
    raw = None
    if out.raw:
        files["frames"] = out_dir / "frames.npy"
        shape = (total_frames, plan.height, plan.width, 3)
        raw = np.lib.format.open_memmap(files["frames"], mode="w+", dtype=np.float32, shape=shape)
    small: list[np.ndarray] = []
    preview = preview_size(plan.width, plan.height, 512)

    records: list[SegmentRecord] = []
    audits: list[dict[str, Any]] = []
    inside: list[float] = []
    seams: list[dict[str, Any]] = []
    previous_tail: torch.Tensor | None = None
    start_frame: PIL.Image.Image | None = None  # the next segment's conditioning (module step 2)
    last_written: np.ndarray | None = None
    first: PlannedJob | None = None
    written = 0
    with Mp4Writer(files["video"], plan.width, plan.height, fps, out.crf) as writer:
        for k in range(count):
            started = time.perf_counter()
            # 1. Plan the segment through the steering operations.
            sub_plan, sub_images = segment_job(plan, k, start_frame, images)
            planned = plan_job_clips(pipe, sub_plan, sub_images, directions)
            first = first or planned
            conditioning, noise, steering = planned.stack(planned.clips)

            # 2. Its initial latents: the overlap from the previous segment's clean latents, re-noised.
            begin: dict[str, Any] = {}
            if previous_tail is not None and overlap:
                pipe.scheduler.set_timesteps(steps, device=pipe._execution_device)
                latents = noise.to(device=pipe._execution_device, dtype=torch.float32) * pipe.scheduler.init_noise_sigma
                latents[:, :overlap] += previous_tail
                begin = {"latents": latents}

            # 3. Denoise.
            def step(pipeline: Any, i: int, t: Any, tensors: dict[str, torch.Tensor], k: int = k, steer=steering):
                if steer:
                    tensors["latents"] = steer(pipeline, i, tensors["latents"])
                on_step(k * steps + i + 1, count * steps)
                return tensors

            latents = pipe(conditioning, noise, steps, callback_on_step_end=step, output_type="latent", **begin)

            # 4. Blend the overlap with the previous segment's, keep this one's tail for the next.
            if previous_tail is not None and overlap:
                latents = blend_overlap(previous_tail, latents, weights)
            previous_tail = latents[:, frames_per - overlap :].clone() if overlap else None

            # 5. Decode; write the frames no later segment replaces.
            frames = pipe.decode(latents, sub_plan.decode_chunk_size)[0]  # (F, H, W, 3)
            start_frame = PIL.Image.fromarray(to_uint8(frames[frames_per - max(overlap, 1)][None])[0])
            keep = frames if k == count - 1 else frames[: frames_per - overlap]
            if k == 0:
                write_poster(frames, files["poster"])
            writer.write(keep)
            if raw is not None:
                raw[written : written + len(keep)] = keep
            small += [np.asarray(PIL.Image.fromarray(f).resize(preview, PIL.Image.LANCZOS)) for f in to_uint8(keep)]

            # 6. Audit the segment and the seam before it.
            report = audit_frames(frames, latents=latents[0].float().cpu().numpy()).to_dict()
            audits.append(report)
            inside += report["frame_diff"]
            if last_written is not None:
                luma = to_luma(np.stack([last_written, keep[0]]))
                seams.append(
                    {"between": [k - 1, k], "frame": written, "frame_diff": float(np.abs(luma[1] - luma[0]).mean())}
                )
            last_written = keep[-1].copy()
            interpolation = planned.clips[0].report
            records.append(SegmentRecord(k, sub_plan.seed, (written, written + len(keep)), 0.0, interpolation))
            written += len(keep)
            records[-1].seconds = time.perf_counter() - started
        writer.close()
    if raw is not None:
        raw.flush()
        del raw
    if out.preview != "none":
        files["preview"] = out_dir / f"preview.{out.preview}"
        write_preview(np.stack(small), files["preview"], fps=fps, fmt=out.preview)
    assert first is not None
    median = float(np.median(inside)) if inside else 0.0
    audit = {
        "segments": audits,
        "seams": [{**seam, "to_median_inside": seam["frame_diff"] / median if median else None} for seam in seams],
        "frame_diff_median_inside": median,
    }
    return ChainResult(files=files, first=first, segments=records, audit=audit)


def describe_chain(plan: JobPlan, chain: ChainResult) -> dict[str, Any]:
    """The manifest's `segments` entry: the spec, the blend weights, and each segment's seed, frames and seconds."""
    segments = plan.job.segments
    assert segments is not None
    weights = overlap_weights(segments.overlap, str(segments.blend))
    return {
        "count": segments.count,
        "overlap": segments.overlap,
        "blend": str(segments.blend),
        "weights": [round(float(w), 6) for w in weights],
        "storyboard": segments.images is not None,
        "frames": chain.segments[-1].frames[1] if chain.segments else 0,
        "segments": [record.to_dict() for record in chain.segments],
    }
