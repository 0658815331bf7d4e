"""Training the toy model: SVD's real components at small size, on synthetic video, on a CPU.

Three stages, each deterministic for a seed:

1. **VAE** (`AutoencoderKLTemporalDecoder`, 96 channels at both ends so that a plain colour survives
   their `GroupNorm(32)`: `docs/toy-model.md`): the encoder and the temporal decoder learn to
   reconstruct pairs of frames from several clips at once, on 32×32 crops aligned to the latent grid
   (a quarter of a frame's cost); then the decoder alone is fine-tuned on whole clips of `NUM_FRAMES`
   frames, the count the pipeline decodes at once. `scaling_factor` is set so that the scaled latents
   have unit variance, as SVD's are.
2. **Encode** a pool of clips once: their scaled latents, their first frame in [-1, 1] and the first
   frame's CLIP image embedding (the image encoder stays a small frozen random CLIP, as in `tiny`).
3. **UNet** (`UNetSpatioTemporalConditionModel`) with SVD's EDM preconditioning and v-prediction,
   conditioned as SVD is: the noise-augmented first frame's VAE latent (unscaled, `mode()`) on every
   frame's channels, its CLIP embedding in cross-attention, and `[fps − 1, motion_bucket_id,
   noise_aug_strength]` as added time ids. With σ drawn as log σ ~ N(0.7, 1.6²), the network sees
   x/√(σ²+1) at timestep ¼·log σ, and its output F gives the denoised estimate
   D = x/(σ²+1) − σ/√(σ²+1)·F (the Euler scheduler's v-prediction step); the loss is
   (σ²+1)/σ²·‖D − x0‖² (EDM's weighting). Conditioning is dropped at random (both together 10% of
   the time, so guidance has an unconditional branch to push from; the image latent alone 15%, so
   the CLIP token carries the picture too; the CLIP token alone 5%).

The result is saved with `save_pretrained` as a `StableVideoDiffusionPipeline` folder in float16, with
the tiny model's CLIP text tower and the loss curves beside it.
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, StableVideoDiffusionPipeline

from workers.tiny import save_tiny_text, small_image_encoder, small_pipeline, small_unet, small_vae
from workers.toy.data import NUM_FRAMES, clip_spec, render

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
    whole_steps: int = 250  # encoder and decoder on whole frames, so their norms see a frame's statistics
    whole_clips: int = 2  # clips a step, `whole_frames` consecutive frames of each: ~2 s a step
    whole_frames: int = 4
    whole_lr: float = 2e-4
    decoder_steps: int = 300  # the temporal decoder alone, on whole clips of NUM_FRAMES frames: ~0.7 s a step
    decoder_lr: float = 1e-4
    pool: int = 1200  # clips encoded once for the UNet stage
    unet_steps: int = 1500
    unet_batch: int = 6  # ~0.36 s a step on 2 cores
    unet_lr: float = 8e-4
    drop_both: float = 0.10
    drop_latent: float = 0.15
    drop_embedding: float = 0.05
    threads: int = 2

    @classmethod
    def short(cls, steps: int, seed: int = 0) -> "TrainConfig":
        """A run of `steps` steps per network on a small pool: for tests and quick tries."""
        return cls(
            seed=seed, vae_steps=steps, whole_steps=steps, decoder_steps=steps, unet_steps=steps, pool=max(8, steps)
        )


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


def clip_tensor(seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clip `seed` as (F, 3, H, W) in [-1, 1], with its fps and motion bucket."""
    spec = clip_spec(seed)
    frames = torch.from_numpy(render(spec)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return frames, {"fps": spec.fps, "motion_bucket_id": spec.motion_bucket_id}


def vae_batch(seed: int, clips: int, frames_each: int, crop: int) -> torch.Tensor:
    """(clips × frames_each, 3, crop, crop): `frames_each` consecutive frames of each of `clips` clips
    drawn from `seed`, each clip cropped at its own place on the 8-pixel latent grid (whole frames when
    `crop` is the frame's size)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(clips):
        frames, _ = clip_tensor(seed * clips + k)
        first = int(rng.integers(0, NUM_FRAMES - frames_each + 1))
        y, x = (int(v) * 8 for v in rng.integers(0, (frames.shape[-1] - crop) // 8 + 1, 2))
        parts.append(frames[first : first + frames_each, :, y : y + crop, x : x + crop])
    return torch.cat(parts)


def reconstruction_loss(decoded: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(decoded, frames) + F.mse_loss(decoded, frames)


def train_vae(vae: AutoencoderKLTemporalDecoder, config: TrainConfig, log: Log) -> list[float]:
    """Reconstruction (L1 + MSE) of short crops from several clips through the encoder's mean and the
    temporal decoder, then of short runs of whole frames (the GroupNorms of a 64×64 frame see other
    statistics than a crop's), then the decoder alone on whole clips. The latents are the posterior's
    mean: the pipeline encodes with `mode()` and the latents' scale is set afterwards."""
    vae.train()
    losses: list[float] = []
    size = clip_tensor(0)[0].shape[-1]
    phases = [
        ("vae", config.vae_steps, config.vae_lr, config.vae_clips, config.vae_frames, config.vae_crop, 0),
        ("whole", config.whole_steps, config.whole_lr, config.whole_clips, config.whole_frames, size, 3_000_000),
    ]
    for name, steps, lr, clips, frames_each, crop, offset in phases:
        if not steps:
            continue
        stepper = Stepper(name, vae, lr, steps, log)
        for step in range(steps):
            frames = vae_batch(config.seed * 1_000_003 + offset + step, clips, frames_each, crop)
            decoded = vae.decode(vae.encode(frames).latent_dist.mode(), num_frames=frames_each).sample
            stepper(step, reconstruction_loss(decoded, frames))
        losses = losses + stepper.losses
    if config.decoder_steps:
        decoder = Stepper("decoder", vae.decoder, config.decoder_lr, config.decoder_steps, log)
        for step in range(config.decoder_steps):
            frames, _ = clip_tensor(config.seed * 1_000_003 + 5_000_000 + step)
            with torch.no_grad():
                latents = vae.encode(frames).latent_dist.mode()
            decoder(step, reconstruction_loss(vae.decode(latents, num_frames=NUM_FRAMES).sample, frames))
        losses = losses + decoder.losses
    vae.eval()
    return losses


@dataclass
class Pool:
    """Clips encoded once: scaled latents (N, F, C, h, w), first frames (N, 3, H, W) in [-1, 1],
    CLIP embeddings (N, D), fps (N,) and motion buckets (N,)."""

    latents: torch.Tensor
    first_frames: torch.Tensor
    embeddings: torch.Tensor
    fps: torch.Tensor
    motion: torch.Tensor


@torch.no_grad()
def encode_pool(pipe: StableVideoDiffusionPipeline, config: TrainConfig, log: Log) -> Pool:
    latents, firsts, embeddings, fps, motion = [], [], [], [], []
    base = 7_000_000 + config.seed * 1_000_003
    for n in range(config.pool):
        frames, meta = clip_tensor(base + n)
        latents.append(pipe.vae.encode(frames).latent_dist.mode())
        firsts.append(frames[0])
        picture = PIL.Image.fromarray(((frames[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
        embeddings.append(pipe._encode_image(picture, "cpu", 1, False)[0, 0])
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


def train_unet(pipe: StableVideoDiffusionPipeline, pool: Pool, config: TrainConfig, log: Log) -> list[float]:
    """EDM-preconditioned v-prediction on the pool, conditioned as the pipeline conditions."""
    unet, vae = pipe.unet, pipe.vae
    stepper = Stepper("unet", unet, config.unet_lr, config.unet_steps, log)
    generator = torch.Generator().manual_seed(config.seed + 1)
    unet.train()
    for step in range(config.unet_steps):
        index = torch.randint(len(pool.latents), (config.unet_batch,), generator=generator)
        x0 = pool.latents[index]  # (B, F, C, h, w), scaled
        batch = len(index)
        # The conditioning frame, noise-augmented as the pipeline does before encoding it.
        aug = torch.exp(torch.empty(batch).uniform_(math.log(0.005), math.log(0.2), generator=generator))
        pixels = pool.first_frames[index] + aug[:, None, None, None] * torch.randn(
            pool.first_frames[index].shape, generator=generator
        )
        with torch.no_grad():
            cond_latent = vae.encode(pixels).latent_dist.mode()  # (B, C, h, w), unscaled
        embedding = pool.embeddings[index][:, None, :]  # (B, 1, D)
        drop = torch.rand(batch, generator=generator)
        drop_latent = (drop < config.drop_both + config.drop_latent).float()
        drop_embedding = ((drop < config.drop_both) | (drop > 1 - config.drop_embedding)).float()
        cond_latent = cond_latent * (1 - drop_latent)[:, None, None, None]
        embedding = embedding * (1 - drop_embedding)[:, None, None]

        sigma = torch.exp(0.7 + 1.6 * torch.randn(batch, generator=generator))
        s = sigma[:, None, None, None, None]
        noisy = x0 + s * torch.randn(x0.shape, generator=generator)
        model_input = torch.cat([noisy / torch.sqrt(s**2 + 1), cond_latent[:, None].expand_as(x0)], dim=2)
        time_ids = torch.stack([pool.fps[index].float() - 1, pool.motion[index].float(), aug], dim=1)
        out = unet(
            model_input, 0.25 * torch.log(sigma), encoder_hidden_states=embedding, added_time_ids=time_ids
        ).sample
        denoised = noisy / (s**2 + 1) - s / torch.sqrt(s**2 + 1) * out
        weight = (s**2 + 1) / s**2
        loss = (weight * (denoised - x0) ** 2).mean()
        stepper(step, loss)
    unet.eval()
    return stepper.losses


def train_toy(out: Path, config: TrainConfig | None = None, log: Log = print) -> TrainResult:
    """Train the toy model into `out` (a `save_pretrained` folder) and write its loss curves."""
    config = config or TrainConfig()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    seconds: dict[str, float] = {}
    pipe = build_toy_pipeline(config.seed)
    pipe.image_encoder.requires_grad_(False)

    started = time.perf_counter()
    vae_losses = train_vae(pipe.vae, config, log)
    seconds["vae"] = time.perf_counter() - started

    started = time.perf_counter()
    pipe.vae.requires_grad_(False)
    pool = encode_pool(pipe, config, log)
    seconds["encode"] = time.perf_counter() - started

    started = time.perf_counter()
    unet_losses = train_unet(pipe, pool, config, log)
    seconds["unet"] = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    # Half precision on disk (the worker loads a model in its device's dtype, float32 on a CPU): the
    # weights then fit the size a repository can carry.
    pipe.to(dtype=torch.float16).save_pretrained(out)
    save_tiny_text(out)  # the tiny text tower beside it (its width is the image encoder's), for `text` directions
    losses = {"vae": vae_losses, "unet": unet_losses}
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
