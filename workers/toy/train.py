"""Training the toy model: SVD's real components at small size, on synthetic video, on a CPU.

Stages, each deterministic for a seed (2 runs only in the variants that train the image encoder):

1. **VAE** (`AutoencoderKLTemporalDecoder`, 96 channels at both ends so that a plain colour survives
   their `GroupNorm(32)`: `docs/toy-model.md`). Its decoder is made frame-wise first
   (`make_framewise`): the temporal layers pass each frame through alone, because with zero padding at
   a chunk's ends they made a frame's brightness depend on its place in the decoded chunk, which the
   audit reads as flicker. The encoder and the decoder learn to reconstruct pairs of frames from
   several clips at once, on 32×32 crops aligned to the latent grid (a quarter of a frame's cost),
   then short runs of whole frames; then the decoder alone is fine-tuned on whole frames of many
   clips. `scaling_factor` is set so that the scaled latents have unit variance, as SVD's are.
2. **Image encoder** (the small CLIP vision tower of `tiny`; frozen and random in the shipped
   configuration): a linear read-out of its embedding learns the first frame's scene (the shape's
   colour, kind, place and size, the background's colours), so that the embedding holds the picture:
   a random tower gives a red circle and a blue square embeddings of cosine 0.99. The read-out is
   thrown away; the tower is frozen from here on.
3. **Encode** a pool of clips once: their scaled latents, their first frame in [-1, 1] and the first
   frame's CLIP image embedding.
4. **UNet** (`UNetSpatioTemporalConditionModel`) with SVD's EDM preconditioning and v-prediction,
   conditioned as SVD is: the noise-augmented first frame's VAE latent (unscaled, `mode()`) on every
   frame's channels, its CLIP embedding in cross-attention, and `[fps − 1, motion_bucket_id,
   noise_aug_strength]` as added time ids. With σ drawn as log σ ~ N(0.7, 1.6²), the network sees
   x/√(σ²+1) at timestep ¼·log σ, and its output F gives the denoised estimate
   D = x/(σ²+1) − σ/√(σ²+1)·F (the Euler scheduler's v-prediction step); the loss is
   (σ²+1)/σ²·‖D − x0‖² (EDM's weighting), plus the same weighting of `temporal_wobble` (D − x0), the
   part of the error that makes one frame brighter or darker than its neighbours. Conditioning is
   dropped at random (both together 10% of the time, so guidance has an unconditional branch to push
   from; the image latent alone 15%, so the CLIP token carries the picture too; the CLIP token alone 5%).

The variants (`TrainConfig.variant`) are earlier configurations and tries:
- `temporal_decoder`, the first shipped model's: the decoder's temporal layers trained with the rest,
  then on whole 8-frame clips; no `temporal_wobble` term.
- `colour_tokens` adds stage 2 to it; shuffles the colour channels of 30% of the conditioning frames
  before they are encoded for the latent, while their CLIP token and the target keep the true colours
  (colour is then read from the token, and references, extra tokens, can pull it); and gives the
  decoder phase a temporal term (each frame's mean colour, and the change between neighbouring frames,
  against the clip's) on 700 steps, a quarter of them on still clips.
- `colour_finish` keeps the first model's step counts: the decoder's temporal term (and an extra term
  on each clip's first frame) on its 300 steps, stage 2, and the colour shuffle (70%) only in the
  UNet's last 500 steps, on a schedule of their own, once the UNet has learned to follow the
  conditioning frame.
- `framewise` makes the first model's decoder frame-wise for its last phase only (500 steps on single
  frames); `framewise_colour` adds stage 2 and the colour shuffle in the UNet's last 600 steps.
- `references` teaches the UNet what a reference token means. Half the VAE's clips have their shape's
  colour mixed toward another palette colour (`vae_tint`: a VAE trained on the palette alone cannot
  draw the mixes). Stage 2 runs. A reference pool is encoded (`encode_reference_pool`): a clip's own
  conditioning frame and token, a reference token (a still of another shape in another colour) with a
  weight w, and as target the clip with its shape's colour mixed toward the reference's by w / (1 + w),
  the reference's attention share when its logit ties the image token's. 30% of every UNet batch comes
  from it, with the reference token beside the image's in cross-attention, weighted through the
  pipeline's own attention processors (logit bias log w).

The result is saved with `save_pretrained` as a `StableVideoDiffusionPipeline` folder in float16, with
the tiny model's CLIP text tower and the loss curves beside it.
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, StableVideoDiffusionPipeline
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

from workers.pipeline import Slot, install_processors
from workers.tiny import save_tiny_text, small_image_encoder, small_pipeline, small_unet, small_vae
from workers.toy.data import COLOURS, NUM_FRAMES, RADIUS_RANGE, SHAPES, SIZE, ClipSpec, clip_spec, random_spec, render

Log = Callable[[str], None]


@dataclass
class TrainConfig:
    """How the toy model is trained; the defaults fit the 30-minute budget of a 2-core CPU."""

    seed: int = 0
    vae_steps: int = 500
    vae_clips: int = 8  # clips a step, `vae_frames` frames of each, cropped to `vae_crop`: ~1 s a step
    vae_frames: int = 2
    vae_crop: int = 32
    vae_lr: float = 5e-4
    vae_tint: float = 0.0  # share of the VAE's clips whose shape has a colour between two of the palette's
    whole_steps: int = 250  # encoder and decoder on whole frames, so their norms see a frame's statistics
    whole_clips: int = 2  # clips a step, `whole_frames` consecutive frames of each: ~2 s a step
    whole_frames: int = 4
    whole_lr: float = 2e-4
    decoder_steps: int = 300  # the decoder alone: ~0.7 s a step
    decoder_lr: float = 1e-4
    framewise_from_start: bool = True  # the decoder frame-wise (`make_framewise`) from the VAE's first step
    decoder_framewise: bool = True  # the decoder phase on single frames (the decoder made frame-wise first)
    decoder_clips: int = 8  # frame-wise: one whole frame of each of this many clips a step
    # The variants' settings (off in the shipped configuration: `docs/toy-model.md`).
    decoder_still: int = 0  # every `decoder_still`-th decoder step is on a still clip (motion bucket 0)
    temporal_weight: float = 0.0
    decoder_first_weight: float = 0.0  # an extra reconstruction term on each clip's first frame
    encoder_steps: int = 0  # the CLIP image tower's scene read-out: ~0.1 s a step
    encoder_batch: int = 32
    encoder_lr: float = 1e-3
    pool: int = 1200  # clips encoded once for the UNet stage
    unet_steps: int = 1500
    unet_batch: int = 6  # ~0.36 s a step on 2 cores
    unet_lr: float = 8e-4
    drop_both: float = 0.10
    drop_latent: float = 0.15
    drop_embedding: float = 0.05
    colour_swap: float = 0.0  # share of conditioning frames whose colour channels are shuffled for the latent alone
    colour_swap_steps: int = 0  # when set, only the last this many UNet steps swap colours, on their own schedule
    colour_swap_lr: float = 3e-4
    # References: in the UNet's last `reference_steps` steps, `reference_share` of a batch's clips come
    # from a pool of `reference_pool` clips whose shape's colour is mixed toward a reference's by the
    # reference token's attention share (its weight w drawn log-uniform in `reference_weights`).
    reference_pool: int = 0
    reference_steps: int = 0
    reference_share: float = 0.3
    reference_weights: tuple[float, float] = (0.125, 8.0)
    reference_lr: float = 8e-4
    reference_ramp: int = 0  # when set, the share rises from none at frame 0 to full at this frame
    unet_temporal_weight: float = 5.0  # a term on how the denoised estimate's coarse error changes over frames
    threads: int = 2

    @classmethod
    def short(cls, steps: int, seed: int = 0, variant: str = "shipped") -> "TrainConfig":
        """A run of `steps` steps per network on a small pool: for tests and quick tries."""
        base = cls.variant(variant, seed)
        return replace(
            base,
            vae_steps=steps,
            whole_steps=steps,
            decoder_steps=steps,
            encoder_steps=steps if base.encoder_steps else 0,
            colour_swap_steps=steps // 2 if base.colour_swap_steps else 0,
            reference_pool=min(base.reference_pool, max(4, steps)),
            reference_steps=steps // 2 if base.reference_steps else 0,
            unet_steps=steps,
            pool=max(8, steps),
        )

    @classmethod
    def variant(cls, name: str, seed: int = 0) -> "TrainConfig":
        """`shipped`: the configuration of `models/toy`; the others are earlier ones and tries that
        `docs/toy-model.md` reports on. `temporal_decoder`: the first shipped model's (the decoder's
        temporal layers trained, no term against frame-to-frame change in the UNet's loss).
        `colour_tokens`: that, with the image encoder trained to read the scene, 30% of conditioning
        latents with shuffled colours (so colour comes from the CLIP token and references pull it), and
        700 decoder steps with the temporal term, still clips among them (32 minutes). `colour_finish`:
        the same ingredients within the first model's step counts, the colour shuffle (70%) only in the
        UNet's last 500 steps. `framewise`: the first model's, its decoder made frame-wise for the
        decoder phase alone (500 steps on single frames). `framewise_colour`: that, with the image
        encoder trained and the colour shuffle in the UNet's last 600 steps. `references`: the shipped
        one, with half the VAE's clips in colours between the palette's, the image encoder trained, and
        30% of every UNet batch from the reference pool (references then pull colour strongly, while
        style stops working: `docs/toy-model.md`)."""
        shipped = cls(seed=seed)
        first = replace(shipped, framewise_from_start=False, decoder_framewise=False, unet_temporal_weight=0.0)
        framewise = replace(first, decoder_framewise=True, decoder_steps=500, decoder_lr=3e-4)
        variants = {
            "shipped": shipped,
            "temporal_decoder": first,
            "colour_tokens": replace(
                first, decoder_steps=700, decoder_still=4, temporal_weight=1.0, encoder_steps=400, colour_swap=0.3
            ),
            "colour_finish": replace(
                first,
                decoder_still=4,
                temporal_weight=1.0,
                decoder_first_weight=1.0,
                encoder_steps=400,
                colour_swap=0.7,
                colour_swap_steps=500,
            ),
            "framewise": framewise,
            "framewise_colour": replace(framewise, encoder_steps=400, colour_swap=0.7, colour_swap_steps=600),
            "references": replace(
                shipped, vae_tint=0.5, encoder_steps=400, reference_pool=400, reference_steps=shipped.unet_steps
            ),
        }
        if name not in variants:
            raise ValueError(f"unknown training variant {name!r}: {', '.join(variants)}")
        return variants[name]


class Stepper:
    """One network's optimiser: AdamW on a one-cycle schedule, gradients clipped to norm 1, and a log
    of the loss (its mean over the last 50 steps every 100 steps)."""

    def __init__(self, name: str, module: torch.nn.Module, lr: float, steps: int, log: Log) -> None:
        self.name, self.module, self.steps, self.log = name, module, steps, log
        self.optimiser = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimiser, lr, total_steps=steps, pct_start=0.05)
        self.losses: list[float] = []

    def __call__(self, step: int, loss: torch.Tensor) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), 1.0)
        self.optimiser.step()
        self.schedule.step()
        self.losses.append(float(loss.detach()))
        if step % 100 == 0 or step == self.steps - 1:
            self.log(f"{self.name} step {step}/{self.steps}: loss {np.mean(self.losses[-50:]):.4f}")


@dataclass
class TrainResult:
    folder: Path
    seconds: dict[str, float]
    losses: dict[str, list[float]] = field(default_factory=dict)


def build_toy_pipeline(seed: int = 0) -> StableVideoDiffusionPipeline:
    """The toy architecture with fresh weights. The VAE has 96 channels in its first and last stages:
    both of its ends are `GroupNorm(32)` → SiLU → conv, and with 2 channels a group (64) a plain area
    normalises to ±1 whatever its colour, which leaves colour no gradient to learn from; with 3 a
    group it has one. Its residual branches start at zero, so that at first each block passes its
    input on and the colour reaches the ends."""
    torch.manual_seed(seed)
    vae = small_vae((96, 64, 64, 96))
    for name, module in vae.named_modules():
        if name.endswith(("conv2", "to_out.0")) and isinstance(
            module, torch.nn.Conv2d | torch.nn.Conv3d | torch.nn.Linear
        ):
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    unet = small_unet((64, 64), (4, 4), NUM_FRAMES)
    return small_pipeline(unet, vae, small_image_encoder())


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """Frames (N, H, W, 3) uint8 as (N, 3, H, W) float in [-1, 1], the VAE's and CLIP input's range."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def clip_tensor(seed: int, **fixed: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clip `seed` as (F, 3, H, W) in [-1, 1], with its fps and motion bucket (`fixed` as in `clip_spec`)."""
    spec = clip_spec(seed, **fixed)
    frames = to_pixels(render(spec))
    return frames, {"fps": spec.fps, "motion_bucket_id": spec.motion_bucket_id}


def other_colour(colour: str, rng: np.random.Generator) -> str:
    """A palette colour other than `colour`, drawn uniformly."""
    return [c for c in COLOURS if c != colour][rng.integers(len(COLOURS) - 1)]


def vae_batch(seed: int, clips: int, frames_each: int, crop: int, tint: float = 0.0) -> torch.Tensor:
    """(clips × frames_each, 3, crop, crop): `frames_each` consecutive frames of each of `clips` clips
    drawn from `seed`, each clip cropped at its own place on the 8-pixel latent grid (whole frames when
    `crop` is the frame's size). A `tint` share of the clips have their shape's colour mixed toward
    another palette colour by a uniform share, so the VAE also learns the colours between the palette's."""
    rng, tints = np.random.default_rng(seed), np.random.default_rng((seed, 1))
    parts = []
    for k in range(clips):
        spec = clip_spec(seed * clips + k)
        if tint and tints.random() < tint:
            spec = replace(spec, tint=(other_colour(spec.colour, tints), float(tints.random())))
        frames = to_pixels(render(spec))
        first = int(rng.integers(0, NUM_FRAMES - frames_each + 1))
        y, x = (int(v) * 8 for v in rng.integers(0, (frames.shape[-1] - crop) // 8 + 1, 2))
        parts.append(frames[first : first + frames_each, :, y : y + crop, x : x + crop])
    return torch.cat(parts)


def reconstruction_loss(decoded: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(decoded, frames) + F.mse_loss(decoded, frames)


def temporal_loss(decoded: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """How a clip's (F, 3, H, W) decoded frames change over time where the clip does not: each frame's
    mean colour against the clip frame's, and the change between neighbouring frames against the clip's."""
    means = F.l1_loss(decoded.mean(dim=(2, 3)), frames.mean(dim=(2, 3)))
    return means + F.l1_loss(decoded.diff(dim=0), frames.diff(dim=0))


def train_vae(vae: AutoencoderKLTemporalDecoder, config: TrainConfig, log: Log) -> list[float]:
    """Reconstruction (L1 + MSE) of short crops from several clips through the encoder's mean and the
    decoder, then of short runs of whole frames (the GroupNorms of a 64×64 frame see other statistics
    than a crop's), then the decoder alone on whole frames (frame-wise) or whole clips (temporal). The
    latents are the posterior's mean: the pipeline encodes with `mode()` and the latents' scale is set
    afterwards."""
    vae.train()
    if config.framewise_from_start:
        make_framewise(vae.decoder)
    losses: list[float] = []
    phases = [
        ("vae", config.vae_steps, config.vae_lr, config.vae_clips, config.vae_frames, config.vae_crop, 0),
        ("whole", config.whole_steps, config.whole_lr, config.whole_clips, config.whole_frames, SIZE, 3_000_000),
    ]
    for name, steps, lr, clips, frames_each, crop, offset in phases:
        if not steps:
            continue
        stepper = Stepper(name, vae, lr, steps, log)
        for step in range(steps):
            frames = vae_batch(config.seed * 1_000_003 + offset + step, clips, frames_each, crop, config.vae_tint)
            decoded = vae.decode(vae.encode(frames).latent_dist.mode(), num_frames=frames_each).sample
            stepper(step, reconstruction_loss(decoded, frames))
        losses = losses + stepper.losses
    if config.decoder_steps and config.decoder_framewise:
        losses = losses + train_framewise_decoder(vae, config, log)
    elif config.decoder_steps:
        decoder = Stepper("decoder", vae.decoder, config.decoder_lr, config.decoder_steps, log)
        every = config.decoder_still
        for step in range(config.decoder_steps):
            still = {"motion_bucket_id": 0} if every and step % every == every - 1 else {}
            frames, _ = clip_tensor(config.seed * 1_000_003 + 5_000_000 + step, **still)
            with torch.no_grad():
                latents = vae.encode(frames).latent_dist.mode()
            decoded = vae.decode(latents, num_frames=NUM_FRAMES).sample
            loss = reconstruction_loss(decoded, frames)
            if config.temporal_weight:
                loss = loss + config.temporal_weight * temporal_loss(decoded, frames)
            if config.decoder_first_weight:  # the first frame, which a clip starts on, held in place
                loss = loss + config.decoder_first_weight * reconstruction_loss(decoded[:1], frames[:1])
            decoder(step, loss)
        losses = losses + decoder.losses
    vae.eval()
    return losses


def make_framewise(decoder: torch.nn.Module) -> None:
    """Set a temporal decoder's temporal layers to pass every frame through on its own, and freeze them.

    Each of its blocks mixes a spatial branch with a temporal one (a residual block of convolutions over
    neighbouring frames), and its output goes through one more convolution over frames; both pad a
    chunk's ends with zeros, so a frame's brightness depends on where it sits in the chunk the pipeline
    decodes (`docs/toy-model.md`). With the temporal blocks' last convolution at zero their output is
    their input, and with the output convolution the identity on the middle frame, the decoder is an
    image decoder in the temporal decoder's form: the stock pipeline loads it, and any chunk size gives
    the same frames."""
    with torch.no_grad():
        for name, module in decoder.named_modules():
            if name.endswith("temporal_res_block"):
                torch.nn.init.zeros_(module.conv2.weight)
                torch.nn.init.zeros_(module.conv2.bias)
                module.requires_grad_(False)
            elif name.endswith("time_mixer"):
                module.requires_grad_(False)
        conv = decoder.time_conv_out
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
        conv.weight[:, :, 1, 0, 0] = torch.eye(conv.out_channels)
        conv.requires_grad_(False)


def train_framewise_decoder(vae: AutoencoderKLTemporalDecoder, config: TrainConfig, log: Log) -> list[float]:
    """The decoder made frame-wise (`make_framewise`), then its spatial layers fine-tuned alone to
    reconstruct one whole frame of each of `decoder_clips` clips a step from the encoder's latents."""
    make_framewise(vae.decoder)
    decoder = Stepper("decoder", vae.decoder, config.decoder_lr, config.decoder_steps, log)
    for step in range(config.decoder_steps):
        seed = config.seed * 1_000_003 + 5_000_000 + step
        frames = vae_batch(seed, config.decoder_clips, 1, SIZE, config.vae_tint)
        with torch.no_grad():
            latents = vae.encode(frames).latent_dist.mode()
        decoder(step, reconstruction_loss(vae.decode(latents, num_frames=1).sample, frames))
    return decoder.losses


def clip_input(pipe: StableVideoDiffusionPipeline, frames: torch.Tensor) -> torch.Tensor:
    """The CLIP tower's input for frames (B, 3, H, W) in [-1, 1], made as the pipeline's `_encode_image`
    makes it (an antialiased resize to 224 in [-1, 1], then CLIP's normalisation), in torch."""
    resized = (_resize_with_antialiasing(frames, (224, 224)) + 1.0) / 2.0
    mean = torch.tensor(pipe.feature_extractor.image_mean)[None, :, None, None]
    std = torch.tensor(pipe.feature_extractor.image_std)[None, :, None, None]
    return (resized - mean) / std


def scene_targets(spec: ClipSpec) -> torch.Tensor:
    """What the image encoder's read-out learns of a clip's first frame: the shape's colour, kind,
    place and size, and the background's top and bottom colours, each in about [0, 1]."""
    colour = np.array(COLOURS[spec.colour]) / 255
    top, bottom = (np.array(c) / 255 for c in spec.background_rgb)
    kind = np.eye(len(SHAPES))[SHAPES.index(spec.shape)]
    place = np.array(spec.start) / spec.size
    values = np.concatenate([colour, top, bottom, kind, place, [spec.radius / RADIUS_RANGE[1]]])
    return torch.tensor(values, dtype=torch.float32)


def train_image_encoder(pipe: StableVideoDiffusionPipeline, config: TrainConfig, log: Log) -> list[float]:
    """The CLIP tower and a linear read-out of its embedding regress `scene_targets` (MSE) of the first
    frames of fresh clips; the read-out is dropped afterwards."""
    encoder = pipe.image_encoder
    width = encoder.config.projection_dim
    head = torch.nn.Linear(width, len(scene_targets(clip_spec(0))))
    both = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    stepper = Stepper("encoder", both, config.encoder_lr, config.encoder_steps, log)
    encoder.requires_grad_(True)
    encoder.train()
    base = 9_000_000 + config.seed * 1_000_003
    for step in range(config.encoder_steps):
        specs = [clip_spec(base + step * config.encoder_batch + k) for k in range(config.encoder_batch)]
        firsts = np.stack([render(replace(spec, num_frames=1))[0] for spec in specs])
        frames = to_pixels(firsts)
        targets = torch.stack([scene_targets(spec) for spec in specs])
        embeddings = encoder(clip_input(pipe, frames)).image_embeds
        stepper(step, F.mse_loss(head(embeddings), targets))
    encoder.eval()
    encoder.requires_grad_(False)
    return stepper.losses


@dataclass
class Pool:
    """Clips encoded once: scaled latents (N, F, C, h, w), first frames (N, 3, H, W) in [-1, 1],
    CLIP embeddings (N, D), fps (N,) and motion buckets (N,)."""

    latents: torch.Tensor
    first_frames: torch.Tensor
    embeddings: torch.Tensor
    fps: torch.Tensor
    motion: torch.Tensor
    # A reference pool's: each clip's reference token (N, D) and its weight (N,).
    references: torch.Tensor | None = None
    weights: torch.Tensor | None = None


def embed(pipe: StableVideoDiffusionPipeline, frame: torch.Tensor) -> torch.Tensor:
    """The CLIP image embedding (D,) of one frame (3, H, W) in [-1, 1], as the pipeline makes it."""
    picture = PIL.Image.fromarray(((frame.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    return pipe._encode_image(picture, "cpu", 1, False)[0, 0]


def reference_example(config: TrainConfig, n: int) -> tuple[ClipSpec, ClipSpec, float]:
    """The reference pool's clip `n`: the clip as its target shows it (its shape's colour mixed toward
    the reference's by w / (1 + w), the reference token's share of the attention at weight w when its
    logit ties the image token's), the reference (a still of another shape, place and background in
    another colour) and its weight w, drawn log-uniform in `config.reference_weights`."""
    rng = np.random.default_rng(8_000_000 + config.seed * 1_000_003 + n)
    spec = random_spec(rng)
    other = other_colour(spec.colour, rng)
    low, high = (math.log(w) for w in config.reference_weights)
    weight = math.exp(rng.uniform(low, high))
    anchor = replace(random_spec(rng), colour=other, num_frames=1)
    return replace(spec, tint=(other, weight / (1 + weight))), anchor, weight


def reference_target(target: ClipSpec, config: TrainConfig) -> np.ndarray:
    """The frames (F, H, W, 3) a reference example trains toward: frame 0 the conditioning frame itself
    (SVD's first frame is its image), the reference's share rising linearly to its full `target.tint`
    by frame `config.reference_ramp`."""
    assert target.tint is not None
    other, share = target.tint
    frames = render(target)
    for f in range(min(config.reference_ramp, target.num_frames)):
        frames[f] = render(replace(target, tint=(other, share * f / config.reference_ramp)))[f]
    return frames


@torch.no_grad()
def encode_reference_pool(pipe: StableVideoDiffusionPipeline, config: TrainConfig, log: Log) -> Pool:
    """Clips that show what a reference does (`reference_example`): each with its own conditioning
    frame and CLIP token, a reference token and its weight, and the target clip's scaled latents."""
    latents, firsts, embeddings, fps, motion, references, weights = [], [], [], [], [], [], []
    scaling = pipe.vae.config.scaling_factor
    for n in range(config.reference_pool):
        target, anchor, weight = reference_example(config, n)
        latents.append(pipe.vae.encode(to_pixels(reference_target(target, config))).latent_dist.mode() * scaling)
        first = to_pixels(render(replace(target, tint=None, num_frames=1)))[0]
        firsts.append(first)
        embeddings.append(embed(pipe, first))
        references.append(embed(pipe, to_pixels(render(anchor))[0]))
        weights.append(weight)
        fps.append(target.fps)
        motion.append(target.motion_bucket_id)
        if n % 250 == 0:
            log(f"references {n}/{config.reference_pool}")
    return Pool(
        torch.stack(latents),
        torch.stack(firsts),
        torch.stack(embeddings),
        torch.tensor(fps),
        torch.tensor(motion),
        torch.stack(references),
        torch.tensor(weights, dtype=torch.float32),
    )


@torch.no_grad()
def encode_pool(pipe: StableVideoDiffusionPipeline, config: TrainConfig, log: Log) -> Pool:
    latents, firsts, embeddings, fps, motion = [], [], [], [], []
    base = 7_000_000 + config.seed * 1_000_003
    for n in range(config.pool):
        frames, meta = clip_tensor(base + n)
        latents.append(pipe.vae.encode(frames).latent_dist.mode())
        firsts.append(frames[0])
        embeddings.append(embed(pipe, frames[0]))
        fps.append(meta["fps"])
        motion.append(meta["motion_bucket_id"])
        if n % 250 == 0:
            log(f"encode {n}/{config.pool}")
    stacked = torch.stack(latents)  # (N, F, C, h, w), unscaled
    scaling = 1.0 / float(stacked.std())
    pipe.vae.register_to_config(scaling_factor=scaling)
    log(f"latent std {1 / scaling:.4f}: scaling_factor {scaling:.4f}")
    return Pool(
        stacked * scaling, torch.stack(firsts), torch.stack(embeddings), torch.tensor(fps), torch.tensor(motion)
    )


def train_unet(
    pipe: StableVideoDiffusionPipeline, pool: Pool, config: TrainConfig, log: Log, references: Pool | None = None
) -> list[float]:
    """EDM-preconditioned v-prediction on the pool, conditioned as the pipeline conditions. The
    colour-swapped steps, then the steps with references, come last, each phase on its own schedule."""
    unet, vae = pipe.unet, pipe.vae
    generator = torch.Generator().manual_seed(config.seed + 1)
    unet.train()
    first = config.unet_steps - config.colour_swap_steps - config.reference_steps
    phases = [("unet", first, config.unet_lr, 0.0 if config.colour_swap_steps else config.colour_swap, None)]
    if config.colour_swap_steps:
        phases.append(("unet-colour", config.colour_swap_steps, config.colour_swap_lr, config.colour_swap, None))
    if config.reference_steps and references is not None:
        phases.append(("unet-references", config.reference_steps, config.reference_lr, 0.0, references))
    losses: list[float] = []
    for name, steps, lr, colour_swap, refs in phases:
        if not steps:
            continue
        stepper = Stepper(name, unet, lr, steps, log)
        losses += _unet_phase(unet, vae, pool, config, stepper, generator, colour_swap, refs)
    unet.eval()
    return losses


def _unet_phase(
    unet: torch.nn.Module,
    vae: AutoencoderKLTemporalDecoder,
    pool: Pool,
    config: TrainConfig,
    stepper: Stepper,
    generator: torch.Generator,
    colour_swap: float,
    references: Pool | None = None,
) -> list[float]:
    """`stepper.steps` UNet steps, `colour_swap` of their conditioning frames with shuffled colours;
    with `references`, `reference_share` of each batch's clips come from that pool, with their reference
    token beside the image's in cross-attention, weighted as the pipeline weights it (logit bias log w)."""
    slot, processors = Slot(), dict(unet.attn_processors)
    if references is not None:  # the stock processors are put back at the end
        install_processors(unet, slot)
    for step in range(stepper.steps):
        index = torch.randint(len(pool.latents), (config.unet_batch,), generator=generator)
        x0 = pool.latents[index]  # (B, F, C, h, w), scaled
        firsts = pool.first_frames[index]
        embedding = pool.embeddings[index][:, None, :]  # (B, 1, D)
        fps, motion = pool.fps[index], pool.motion[index]
        batch = len(index)
        chosen = torch.zeros(batch, dtype=torch.bool)
        if references is not None:
            assert references.references is not None and references.weights is not None
            chosen = torch.rand(batch, generator=generator) < config.reference_share
            other = torch.randint(len(references.latents), (batch,), generator=generator)
            x0 = _pick(chosen, x0, references.latents[other])
            firsts = _pick(chosen, firsts, references.first_frames[other])
            embedding = _pick(chosen, embedding, references.embeddings[other][:, None, :])
            fps, motion = _pick(chosen, fps, references.fps[other]), _pick(chosen, motion, references.motion[other])
            reference = references.references[other][:, None, :] * chosen[:, None, None]
            embedding = torch.cat([embedding, reference], dim=1)  # (B, 2, D)
            bias = torch.where(chosen, torch.log(references.weights[other]), torch.tensor(-math.inf))
            bias = torch.stack([torch.zeros(batch), bias], dim=1)  # (B, 2)
        # The conditioning frame, noise-augmented as the pipeline does before encoding it; for some, with
        # its colour channels shuffled (the CLIP token keeps the true colours, so colour is read from it).
        if colour_swap:
            swap = torch.rand(batch, generator=generator) < colour_swap
            orders = torch.stack([torch.randperm(3, generator=generator) for _ in range(batch)])
            shuffled = torch.stack([frame[order] for frame, order in zip(firsts, orders, strict=True)])
            firsts = torch.where(swap[:, None, None, None], shuffled, firsts)
        aug = torch.exp(torch.empty(batch).uniform_(math.log(0.005), math.log(0.2), generator=generator))
        pixels = firsts + aug[:, None, None, None] * torch.randn(firsts.shape, generator=generator)
        with torch.no_grad():
            cond_latent = vae.encode(pixels).latent_dist.mode()  # (B, C, h, w), unscaled
        # Conditioning is dropped at random, except for a clip with a reference (its target needs both).
        drop = torch.rand(batch, generator=generator)
        drop_latent = ((drop < config.drop_both + config.drop_latent) & ~chosen).float()
        drop_embedding = (((drop < config.drop_both) | (drop > 1 - config.drop_embedding)) & ~chosen).float()
        cond_latent = cond_latent * (1 - drop_latent)[:, None, None, None]
        embedding = embedding * (1 - drop_embedding)[:, None, None]
        if references is not None:
            frames = x0.shape[1]
            slot.fill(embedding[:, None].expand(-1, frames, -1, -1), bias[:, None].expand(-1, frames, -1))

        sigma = torch.exp(0.7 + 1.6 * torch.randn(batch, generator=generator))
        s = sigma[:, None, None, None, None]
        noisy = x0 + s * torch.randn(x0.shape, generator=generator)
        model_input = torch.cat([noisy / torch.sqrt(s**2 + 1), cond_latent[:, None].expand_as(x0)], dim=2)
        time_ids = torch.stack([fps.float() - 1, motion.float(), aug], dim=1)
        out = unet(
            model_input, 0.25 * torch.log(sigma), encoder_hidden_states=embedding, added_time_ids=time_ids
        ).sample
        denoised = noisy / (s**2 + 1) - s / torch.sqrt(s**2 + 1) * out
        weight = (s**2 + 1) / s**2
        loss = (weight * (denoised - x0) ** 2).mean()
        if config.unet_temporal_weight:
            loss = loss + config.unet_temporal_weight * (weight * temporal_wobble(denoised - x0) ** 2).mean()
        stepper(step, loss)
    if references is not None:
        unet.set_attn_processor(processors)
    return stepper.losses


def _pick(chosen: torch.Tensor, mine: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
    """Per batch row, `theirs` where `chosen` (B,) is set, else `mine`."""
    return torch.where(chosen.view(-1, *[1] * (mine.dim() - 1)), theirs, mine)


def temporal_wobble(error: torch.Tensor) -> torch.Tensor:
    """The second difference over frames of an error (B, F, C, h, w) averaged over 2×2 latent pixels:
    zero where the error changes steadily from frame to frame, large where one frame departs from both
    its neighbours (brighter or darker than both), which is what the audit reads as flicker."""
    coarse = F.avg_pool2d(error.flatten(0, 1), 2).unflatten(0, error.shape[:2])
    return coarse.diff(n=2, dim=1)


def train_toy(out: Path, config: TrainConfig | None = None, log: Log = print) -> TrainResult:
    """Train the toy model into `out` (a `save_pretrained` folder) and write its loss curves."""
    config = config or TrainConfig()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    seconds: dict[str, float] = {}
    pipe = build_toy_pipeline(config.seed)

    started = time.perf_counter()
    pipe.image_encoder.requires_grad_(False)
    vae_losses = train_vae(pipe.vae, config, log)
    seconds["vae"] = time.perf_counter() - started

    encoder_losses: list[float] = []
    if config.encoder_steps:
        started = time.perf_counter()
        encoder_losses = train_image_encoder(pipe, config, log)
        seconds["image_encoder"] = time.perf_counter() - started

    started = time.perf_counter()
    pipe.vae.requires_grad_(False)
    pool = encode_pool(pipe, config, log)
    seconds["encode"] = time.perf_counter() - started

    references = None
    if config.reference_steps:
        started = time.perf_counter()
        references = encode_reference_pool(pipe, config, log)
        seconds["references"] = time.perf_counter() - started

    started = time.perf_counter()
    unet_losses = train_unet(pipe, pool, config, log, references)
    seconds["unet"] = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    # Half precision on disk (the worker loads a model in its device's dtype, float32 on a CPU): the
    # weights then fit the size a repository can carry.
    pipe.to(dtype=torch.float16).save_pretrained(out)
    save_tiny_text(out)  # the tiny text tower beside it (its width is the image encoder's), for `text` directions
    losses = {"vae": vae_losses, **({"image_encoder": encoder_losses} if encoder_losses else {}), "unet": unet_losses}
    record = {"config": asdict(config), "seconds": seconds, "losses": losses}
    (out / "training.json").write_text(json.dumps(record) + "\n")
    log(f"saved to {out} ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    return TrainResult(out, seconds, losses)


def plot_losses(losses: dict[str, list[float]], path: Path) -> Path:
    """Loss curves (moving average over 25 steps) of each stage, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 3.2))
    for ax, (name, values) in zip(np.atleast_1d(axes), losses.items(), strict=True):
        window = min(25, len(values))
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(values, color="0.8", linewidth=0.5)
        ax.plot(np.arange(window - 1, len(values)), smooth, color="C0")
        ax.set_title(f"{name} loss")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
