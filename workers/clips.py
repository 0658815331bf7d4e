"""Planning the clips of a job: one, or a sweep's `count` along a path, each fully conditioned.

Clip k of a sweep sits at u_k = k / (count − 1) on its path (u = 0 for a sweep of one: the job as
written). Every clip draws its noise from its own generator seeded with the job's seed, so clip k is
the single job with clip k's parameters; batching them through the UNet changes only float rounding.

| target | clip k is the job with |
|---|---|
| seed | `variation: {seed: sweep.to, strength: u_k}` (noise interpolated with `sweep.interpolation`) |
| image | the conditioning interpolated from `image` to `sweep.to` at u_k, in both spaces |
| direction | `directions[sweep.direction].strength` = lerp(strength, sweep.to, u_k) |
| motion_bucket_id | `generation.motion_bucket_id` = round(lerp(motion_bucket_id, sweep.to, u_k)) |
"""

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from api_schemas import Interpolation, JobRequest, SweepTarget
from steering.interpolate import geodesic, lerp, shell_penalty, slerp
from workers.conditioning import ClipParams, Encoder, Inputs, build_conditioning
from workers.directions import DirectionResolver, ResolvedDirection, resolve_directions
from workers.errors import JobInputError
from workers.latent_steering import LatentEdit, LatentSteering, StyleEdit
from workers.pipeline import Conditioning, SteerableVideoPipeline


@dataclass
class Clip:
    """One clip ready to denoise: unit noise (1, F, C, h, w), conditioning (B = 1), latent edits."""

    index: int
    params: dict[str, Any]
    noise: torch.Tensor
    conditioning: Conditioning
    edits: list[LatentEdit] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def sweep_positions(job: JobRequest) -> list[float]:
    count = job.sweep.count if job.sweep else 1
    return [0.0] if count == 1 else [k / (count - 1) for k in range(count)]


def draw_latents(pipe: SteerableVideoPipeline, job: JobRequest, seed: int) -> torch.Tensor:
    gen = job.generation
    assert gen.num_frames and gen.height and gen.width
    device = pipe._execution_device
    return pipe.draw_noise(torch.Generator(device).manual_seed(seed), gen.num_frames, gen.height, gen.width).latents


def interpolate_noise(a: torch.Tensor, b: torch.Tensor, u: float, method: Interpolation) -> tuple[torch.Tensor, dict]:
    """Noise between two seeds' draws; geodesic keeps to the Gaussian shell of radius sqrt(n)."""
    if method is Interpolation.linear:
        return lerp(a, b, u), {"method": "linear"}
    if method is Interpolation.slerp or u in (0.0, 1.0):
        return slerp(a, b, u), {"method": str(method)}
    path = geodesic(a, b, torch.tensor([u]), penalty=shell_penalty(math.sqrt(a.numel())))
    return path.points[0], {"method": "geodesic", "energy": path.energy, "slerp_energy": path.slerp_energy}


def plan_clips(
    pipe: SteerableVideoPipeline, job: JobRequest, inputs: Inputs, directions: DirectionResolver
) -> tuple[list[Clip], StyleEdit | None]:
    """Every clip of the job with its noise, conditioning and latent edits; plus the style edit."""
    gen = job.generation
    assert job.seed is not None and gen.num_frames and gen.height and gen.width
    sweep = job.sweep
    scale = pipe.vae_scale_factor
    latent_shape = (pipe.unet.config.in_channels // 2, gen.height // scale, gen.width // scale)
    embedding_dim = int(pipe.image_encoder.config.projection_dim)

    # Every clip's own generator draws the same augmentation noise: encode the images once.
    device = pipe._execution_device
    base = pipe.draw_noise(torch.Generator(device).manual_seed(job.seed), gen.num_frames, gen.height, gen.width)
    encoder = Encoder(pipe, job, base.augmentation)
    variation = draw_latents(pipe, job, job.variation.seed) if job.variation else None
    sweep_noise = draw_latents(pipe, job, int(sweep.to)) if sweep and sweep.target is SweepTarget.seed else None

    clips = []
    for k, u in enumerate(sweep_positions(job)):
        params: dict[str, Any] = {"u": u}
        report: dict[str, Any] = {}
        clip = ClipParams()
        strengths: dict[int, float] = {}
        noise = base.latents
        if variation is not None:
            noise = slerp(noise, variation, job.variation.strength)  # type: ignore[union-attr]
        if sweep is not None:
            if sweep.target is SweepTarget.seed:
                assert sweep_noise is not None
                noise, report["noise"] = interpolate_noise(base.latents, sweep_noise, u, sweep.interpolation)
                params["variation"] = {"seed": int(sweep.to), "strength": u}
            elif sweep.target is SweepTarget.image:
                clip.image_mix = u
            elif sweep.target is SweepTarget.motion_bucket_id:
                clip.motion_bucket_id = round(gen.motion_bucket_id + (int(sweep.to) - gen.motion_bucket_id) * u)
                params["motion_bucket_id"] = clip.motion_bucket_id
            else:
                start = job.directions[sweep.direction].strength
                if not isinstance(start, int | float):
                    raise JobInputError(
                        f"directions[{sweep.direction}].strength", "a sweep over a direction needs a number strength"
                    )
                strengths[sweep.direction] = float(start) + (float(sweep.to) - float(start)) * u
                params["strength"] = strengths[sweep.direction]
        resolved = resolve_directions(
            job, directions, embedding_dim=embedding_dim, latent_shape=latent_shape, strengths=strengths
        )
        clip.embedding_edits = [(d.vector, d.alpha[0]) for d in resolved if d.space == "embedding"]
        conditioning, interpolation = build_conditioning(pipe, job, inputs, encoder, clip)
        report.update(interpolation)
        clips.append(
            Clip(
                index=k,
                params=params,
                noise=noise,
                conditioning=conditioning,
                edits=[latent_edit(d) for d in resolved if d.space == "latent"],
                report=report,
            )
        )
    return clips, style_edit(pipe, job, inputs)


def latent_edit(direction: ResolvedDirection) -> LatentEdit:
    return LatentEdit(vector=direction.vector, alpha=direction.alpha[None])


def style_edit(pipe: SteerableVideoPipeline, job: JobRequest, inputs: Inputs) -> StyleEdit | None:
    """The reference's per-channel latent statistics, in the denoising latents' scaled space."""
    from steering.adain import channel_stats
    from steering.schedules import step_window

    style = job.style
    if style is None or inputs.style is None:
        return None
    gen = job.generation
    assert gen.height and gen.width
    clean = torch.zeros((1, 3, gen.height, gen.width), dtype=torch.float32, device=pipe._execution_device)
    latent = pipe.encode_image(inputs.style, gen.height, gen.width, clean, 0.0).latent
    scaled = latent[None, None] * pipe.vae.config.scaling_factor  # (1, 1, C, h, w)
    mean, std = channel_stats(scaled)
    return StyleEdit(
        mean=mean[0, 0],
        std=std[0, 0],
        strength=style.strength,
        window=step_window(gen.steps, *style.steps),
        over_frames=style.over_frames,
    )


def stack_clips(clips: list[Clip], style: StyleEdit | None) -> tuple[Conditioning, torch.Tensor, LatentSteering]:
    """B clips as one batch: conditioning and noise concatenated, latent edits with (B, S, F) alphas."""
    first = clips[0].conditioning
    biases = [c.conditioning.token_bias for c in clips]
    conditioning = Conditioning(
        tokens=torch.cat([c.conditioning.tokens for c in clips]),
        negative_tokens=torch.cat([c.conditioning.negative_tokens for c in clips]),
        token_bias=None if first.token_bias is None else torch.cat(biases),  # type: ignore[arg-type]
        image_latents=torch.cat([c.conditioning.image_latents for c in clips]),
        negative_image_latents=torch.cat([c.conditioning.negative_image_latents for c in clips]),
        added_time_ids=torch.cat([c.conditioning.added_time_ids for c in clips]),
        guidance=torch.cat([c.conditioning.guidance for c in clips]),
    )
    noise = torch.cat([c.noise for c in clips])
    edits = [
        LatentEdit(vector=group[0].vector, alpha=torch.cat([e.alpha for e in group]))
        for group in zip(*(c.edits for c in clips), strict=True)
    ]
    return conditioning, noise, LatentSteering(edits=edits, style=style)
