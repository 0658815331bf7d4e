"""The seam every steering operation plugs into: one small protocol, a context per job, a state per clip.

The engine plans a job's clips in three passes over the registry (`workers.ops.OPERATIONS`), in its
order, and then denoises:

1. `expand`: the clips the job renders (one; a sweep's `count` along its path);
2. per clip, `noise` (the initial latents: unit Gaussian noise of the job's seed to begin with), then
   `condition` (the per-frame conditioning: the conditioning image held over every frame, or the
   keyframes, to begin with);
3. per UNet batch, `start`: where denoising begins when not from noise at the first step (a real
   clip's edit starts part-way), and `step_action`: what acts on the latents after each denoising
   step, through the pipeline's `callback_on_step_end`;

and `describe` says what the operation did, for the manifest. An operation the job does not use is
not instantiated (`for_job` returns None), so a job without steering runs the stock pipeline.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

import PIL.Image
import torch

from api_schemas import JobRequest
from steering.conditioning import corpus_penalty
from steering.interpolate import KnnPenalty
from workers.directions import DirectionResolver
from workers.pipeline import Conditioning, EncodedImage, Noise, SteerableVideoPipeline
from workers.plan import JobPlan
from workers.video_input import VideoClip


class Encoder:
    """Encodes each image once per job (a sweep reuses the encodings for every clip). Every image
    shares the job's one augmentation noise draw, so a morph between identical images is that image."""

    def __init__(self, pipe: SteerableVideoPipeline, plan: JobPlan, augmentation: torch.Tensor) -> None:
        self.pipe, self.height, self.width = pipe, plan.height, plan.width
        self.augmentation, self.strength = augmentation, plan.job.generation.noise_aug_strength
        self._images: dict[int, EncodedImage] = {}
        self._embeddings: dict[int, torch.Tensor] = {}

    def image(self, image: PIL.Image.Image) -> EncodedImage:
        """CLIP embedding and VAE latent of the noise-augmented image."""
        key = id(image)
        if key not in self._images:
            self._images[key] = self.pipe.encode_image(image, self.height, self.width, self.augmentation, self.strength)
        return self._images[key]

    def embedding(self, image: PIL.Image.Image) -> torch.Tensor:
        """The CLIP embedding alone (D,), without a VAE pass when the image has none yet."""
        key = id(image)
        if key in self._images:
            return self._images[key].embedding
        if key not in self._embeddings:
            self._embeddings[key] = self.pipe.encode_image_embedding(image)
        return self._embeddings[key]


@dataclass
class JobContext:
    """What every operation of one job may read: the plan, the pipeline, the job's decoded images by
    field path (`style.image`, `keyframes[1].image`), stored directions, the image encoder and the
    job seed's own noise draw."""

    plan: JobPlan
    pipe: SteerableVideoPipeline
    images: dict[str, PIL.Image.Image]
    directions: DirectionResolver
    encoder: Encoder
    base_noise: Noise
    video: VideoClip | None = None
    """The frames of the job's `video`, read at its size (None without one)."""
    _geodesic: tuple[KnnPenalty | None, dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def job(self) -> JobRequest:
        return self.plan.job

    def geodesic_penalty(self) -> tuple[KnnPenalty | None, dict[str, Any]]:
        """The manifold penalty a geodesic path keeps to (None: it falls back to slerp) and what corpus
        it came from: the job's own `corpus` images (each encoded once per loaded model,
        `EmbeddingCache`), else the model's configured corpus, else none. Made once per job: a sweep
        asks once per clip."""
        if self._geodesic is None:
            refs = self.job.corpus
            if refs:
                images = [self.images[f"corpus[{i}]"] for i in range(len(refs))]
                rows, fresh = self.pipe.embedding_cache.embeddings(self.pipe, images)
                about: dict[str, Any] = {"source": "job", "images": len(refs), "encoded": fresh}
            else:
                rows = self.pipe.corpus_embeddings()
                about = {"source": "model" if rows is not None else None, "images": 0 if rows is None else len(rows)}
            self._geodesic = (corpus_penalty(rows), about)
        return self._geodesic

    def reference_embeddings(self) -> list[torch.Tensor]:
        """CLIP embeddings (D,) of the job's reference images, in order."""
        return [self.encoder.embedding(self.images[f"references[{i}].image"]) for i in range(len(self.job.references))]

    def draw_latents(self, seed: int) -> torch.Tensor:
        """Unit initial noise (1, F, C, h, w) of another seed, drawn as the job's own is."""
        generator = torch.Generator(self.pipe._execution_device).manual_seed(seed)
        plan = self.plan
        return self.pipe.draw_noise(generator, plan.num_frames, plan.height, plan.width).latents


@dataclass
class FrameConditioning:
    """One clip's conditioning while operations shape it: F frames, B = 1.

    `key_*` are the encoded conditioning images at `key_positions` (one key held over the clip for a
    single `image`); `embeddings` (F, D) and `latents` (F, C, h, w) are the per-frame values the
    positive branch is conditioned on; `references` are extra CLIP tokens with their weights; the
    negative branch is zeros unless `negative_*` are set. A bidirectional job also has `reverse`, the
    conditioning of its time-flipped pass (per-frame values in flipped order), and `ends` (2, C, h, w),
    the scaled latents the denoised estimate's first and last frames are held to.
    """

    key_embeddings: torch.Tensor
    key_latents: torch.Tensor
    key_positions: list[float]
    embeddings: torch.Tensor
    latents: torch.Tensor
    motion_bucket_id: int
    references: list[torch.Tensor] = field(default_factory=list)
    reference_weights: list[float] = field(default_factory=list)
    negative_embedding: torch.Tensor | None = None
    negative_latent: torch.Tensor | None = None
    reverse: "FrameConditioning | None" = None
    ends: torch.Tensor | None = None


@dataclass
class ClipState:
    """One clip of the job while it is planned. `u` is its position on a sweep's path (0 otherwise);
    `params` what it changes (recorded per clip in a sweep's manifest); `report` how its values were
    interpolated; `noise` its unit initial latents (1, F, C, h, w); `strengths` direction strengths a
    sweep overrides, by index; `step_edits` per-clip state an operation batches in `step_action`."""

    index: int
    u: float
    noise: torch.Tensor
    conditioning: FrameConditioning
    params: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    strengths: dict[int, float] = field(default_factory=dict)
    step_edits: dict[str, Any] = field(default_factory=dict)


@dataclass
class Start:
    """Where a batch's denoising begins: at step `step`, from `latents` (B, F, C, h, w) already at that
    step's sigma; `step` equal to the job's steps means no step runs and `latents` are the result."""

    step: int
    latents: torch.Tensor


class StepAction(Protocol):
    """Acts on a batch's latents (B, F, C, h, w) after denoising step `step`; returns the new latents."""

    def __call__(self, pipe: Any, step: int, latents: torch.Tensor) -> torch.Tensor: ...


class Operation:
    """A steering operation. Subclasses set `name` (the job field it implements) and override the
    hooks they need; every hook's default leaves the job as it is."""

    name: ClassVar[str]
    """The job document's field that asks for the operation."""

    @classmethod
    def for_job(cls, ctx: JobContext) -> Self | None:
        """The operation for this job, or None when the job does not use it (its field is unset or
        empty). Operations that prepare something per job override this."""
        return cls() if getattr(ctx.job, cls.name) else None

    def expand(self, ctx: JobContext, clips: list[ClipState]) -> list[ClipState]:
        """The clips the job renders."""
        return clips

    def noise(self, ctx: JobContext, clip: ClipState) -> None:
        """Change `clip.noise`, the clip's unit initial latents."""

    def condition(self, ctx: JobContext, clip: ClipState) -> None:
        """Change `clip.conditioning`."""

    def start(
        self,
        ctx: JobContext,
        clips: list[ClipState],
        conditioning: Conditioning,
        on_step: Callable[[int], None] | None = None,
    ) -> Start | None:
        """Where a batch of `clips` (conditioned on `conditioning`) begins denoising; None: from their
        noise at the first step. `on_step(i)` is for work the operation does per step (it may raise)."""
        return None

    def step_action(self, ctx: JobContext, clips: list[ClipState]) -> StepAction | None:
        """What acts on the latents of a batch of `clips` after each step (None: nothing)."""
        return None

    def describe(self, ctx: JobContext) -> dict[str, Any]:
        """What the operation did, for the manifest's `steering` section."""
        return {}


@dataclass
class LatentSteering:
    """The step callback's latent work for one batch: each operation's action in registry order; a
    no-op when there is none."""

    actions: list[StepAction] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.actions)

    def __call__(self, pipe: Any, step: int, latents: torch.Tensor) -> torch.Tensor:
        for action in self.actions:
            latents = action(pipe, step, latents)
        return latents
