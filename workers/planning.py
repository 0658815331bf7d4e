"""From a resolved plan and its decoded images to clips ready to denoise, through the steering operations.

The engine's only contact with steering: it builds a `JobContext`, asks `plan_clips` for the clips
(every operation of `workers.ops.OPERATIONS` the job uses has shaped their noise and conditioning)
and `stack_clips` for each UNet batch's conditioning, noise and step callback work; `plan_job_clips`
does all of it for the engine.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import PIL.Image
import torch

from steering.conditioning import reference_tokens
from steering.schedules import guidance_scales
from workers.directions import DirectionResolver
from workers.ops import ClipState, FrameConditioning, JobContext, LatentSteering, Operation, Start, operations_for
from workers.ops.base import Encoder
from workers.pipeline import Conditioning, SteerableVideoPipeline, TimeReversal
from workers.plan import JobPlan
from workers.video_input import VideoClip


@dataclass
class Clip:
    """One clip ready to denoise: its planned state (noise, what it changes, how it was interpolated,
    what operations batch in their step actions) and the conditioning (B = 1) made from it."""

    state: ClipState
    conditioning: Conditioning

    @property
    def index(self) -> int:
        return self.state.index

    @property
    def noise(self) -> torch.Tensor:
        """Unit initial latents (1, F, C, h, w)."""
        return self.state.noise

    @property
    def params(self) -> dict[str, Any]:
        return self.state.params

    @property
    def report(self) -> dict[str, Any]:
        return self.state.report


@dataclass
class PlannedJob:
    """A job's clips, planned, with the operations that shaped them: what the engine denoises."""

    ctx: JobContext
    operations: list[Operation]
    clips: list[Clip]

    def batches(self) -> list[list[Clip]]:
        """The clips in UNet batches of the plan's `batch_size`."""
        size = self.ctx.plan.batch_size
        return [self.clips[i : i + size] for i in range(0, len(self.clips), size)]

    def stack(self, clips: list[Clip]) -> tuple[Conditioning, torch.Tensor, LatentSteering]:
        """One batch's conditioning, noise and step callback work."""
        return stack_clips(self.ctx, clips, self.operations)

    def start(
        self, clips: list[Clip], conditioning: Conditioning, on_step: Callable[[int], None] | None = None
    ) -> Start | None:
        """Where a batch begins denoising when an operation says (a video edit); None: from its noise."""
        states = [c.state for c in clips]
        for op in self.operations:
            begun = op.start(self.ctx, states, conditioning, on_step)
            if begun is not None:
                return begun
        return None


def plan_job_clips(
    pipe: SteerableVideoPipeline,
    plan: JobPlan,
    images: dict[str, PIL.Image.Image],
    directions: DirectionResolver | None = None,
    video: VideoClip | None = None,
) -> PlannedJob:
    """Plan every clip of a resolved job through the steering operations it uses; `images` are its
    decoded images by field path (`JobRequest.image_refs`), `video` the frames of its `video`."""
    ctx = job_context(pipe, plan, images, directions or DirectionResolver(), video)
    operations = operations_for(ctx)
    return PlannedJob(ctx, operations, plan_clips(ctx, operations))


def job_context(
    pipe: SteerableVideoPipeline,
    plan: JobPlan,
    images: dict[str, PIL.Image.Image],
    directions: DirectionResolver,
    video: VideoClip | None = None,
) -> JobContext:
    """The context the job's operations share; draws the job seed's noise (diffusers' order)."""
    generator = torch.Generator(pipe._execution_device).manual_seed(plan.seed)
    base = pipe.draw_noise(generator, plan.num_frames, plan.height, plan.width)
    encoder = Encoder(pipe, plan, base.augmentation)
    return JobContext(
        plan=plan, pipe=pipe, images=images, directions=directions, encoder=encoder, base_noise=base, video=video
    )


def plan_clips(ctx: JobContext, operations: list[Operation] | None = None) -> list[Clip]:
    """Every clip of the job with its noise and conditioning, shaped by `operations` (default: those
    the job uses)."""
    ops = operations_for(ctx) if operations is None else operations

    # 1. The clips: the job as written, or a sweep's path.
    clips = [ClipState(index=0, u=0.0, noise=ctx.base_noise.latents, conditioning=plain_conditioning(ctx))]
    for op in ops:
        clips = op.expand(ctx, clips)

    # 2. Each clip's initial noise, then its per-frame conditioning.
    planned = []
    for clip in clips:
        for op in ops:
            op.noise(ctx, clip)
        for op in ops:
            op.condition(ctx, clip)
        conditioning = finish_conditioning(ctx, clip.conditioning)
        planned.append(Clip(clip, conditioning))
    return planned


def plain_conditioning(ctx: JobContext) -> FrameConditioning:
    """SVD's own conditioning: the image (or the first keyframe) held over every frame, in both spaces."""
    job, frames = ctx.job, ctx.plan.num_frames
    if job.keyframes is not None:
        paths = [f"keyframes[{i}].image" for i in range(len(job.keyframes))]
        positions = [k.at for k in job.keyframes]
    else:
        paths, positions = ["image"], [0.0]
    keys = [ctx.encoder.image(ctx.images[path]) for path in paths]
    embeddings = torch.stack([k.embedding for k in keys])  # (K, D)
    latents = torch.stack([k.latent for k in keys])  # (K, C, h, w)
    return FrameConditioning(
        key_embeddings=embeddings,
        key_latents=latents,
        key_positions=positions,
        embeddings=embeddings[:1].expand(frames, -1),
        latents=latents[:1].expand(frames, -1, -1, -1),
        motion_bucket_id=job.generation.motion_bucket_id,
    )


def finish_conditioning(ctx: JobContext, cond: FrameConditioning) -> Conditioning:
    """What the pipeline consumes for one clip (B = 1): tokens (image embedding per frame, then
    weighted references), the unconditional branch, extra time ids and per-frame guidance."""
    gen, frames = ctx.job.generation, ctx.plan.num_frames
    tokens, bias = reference_tokens(cond.embeddings[:, None, :], cond.references, cond.reference_weights)
    negative_tokens = torch.zeros_like(tokens)
    if cond.negative_embedding is not None and cond.negative_latent is not None:
        negative_tokens[:, 0] = cond.negative_embedding
        negative_latents = cond.negative_latent.expand(frames, -1, -1, -1)
    else:
        negative_latents = torch.zeros_like(cond.latents)
    time_ids = ctx.pipe.time_ids(gen.fps, cond.motion_bucket_id, gen.noise_aug_strength)
    guidance = guidance_scales(gen.guidance.min, gen.guidance.max, frames, str(gen.guidance.shape))  # type: ignore[arg-type]
    reverse = None
    if cond.reverse is not None and cond.ends is not None:
        reverse = TimeReversal(finish_conditioning(ctx, cond.reverse), cond.ends[None], ctx.plan.seed)
    return Conditioning(
        tokens=tokens[None].contiguous(),
        negative_tokens=negative_tokens[None].contiguous(),
        token_bias=None if bias is None else bias[None],
        image_latents=cond.latents[None].contiguous(),
        negative_image_latents=negative_latents[None].contiguous(),
        added_time_ids=time_ids[None],
        guidance=guidance[None],
        reverse=reverse,
    )


def stack_clips(
    ctx: JobContext, clips: list[Clip], operations: list[Operation]
) -> tuple[Conditioning, torch.Tensor, LatentSteering]:
    """B clips as one batch: conditioning and noise concatenated, and each operation's step action."""
    conditioning = concat_conditioning([c.conditioning for c in clips])
    noise = torch.cat([c.noise for c in clips])
    states = [c.state for c in clips]
    actions = [action for op in operations if (action := op.step_action(ctx, states)) is not None]
    return conditioning, noise, LatentSteering(actions)


def concat_conditioning(conditionings: list[Conditioning]) -> Conditioning:
    """Clips' conditionings (B = 1 each) as one batch's, a bidirectional job's flipped pass included."""
    first = conditionings[0]
    reverse = None
    if first.reverse is not None:
        reversals = [c.reverse for c in conditionings if c.reverse is not None]
        reverse = TimeReversal(
            conditioning=concat_conditioning([r.conditioning for r in reversals]),
            ends=torch.cat([r.ends for r in reversals]),
            seed=first.reverse.seed,
        )
    return Conditioning(
        tokens=torch.cat([c.tokens for c in conditionings]),
        negative_tokens=torch.cat([c.negative_tokens for c in conditionings]),
        token_bias=None if first.token_bias is None else torch.cat([c.token_bias for c in conditionings]),
        image_latents=torch.cat([c.image_latents for c in conditionings]),
        negative_image_latents=torch.cat([c.negative_image_latents for c in conditionings]),
        added_time_ids=torch.cat([c.added_time_ids for c in conditionings]),
        guidance=torch.cat([c.guidance for c in conditionings]),
        reverse=reverse,
    )
