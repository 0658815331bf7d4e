"""From a resolved job and its decoded images to the `Conditioning` the pipeline consumes.

Per frame f of F the conditioning position is t = f / (F - 1). Keyframes at positions a_0 < … < a_K
condition frame f on the interpolation of the two keyframes around t (held flat before a_0 and after
a_K), in both spaces SVD is conditioned on: the CLIP image embedding and the VAE image latent.
All keyframes share one augmentation noise draw, so a morph between identical images is that image.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import PIL.Image
import torch

from api_schemas import Interpolation, JobRequest
from steering.directions import apply_direction
from steering.interpolate import GaussianPenalty, geodesic, lerp, slerp
from steering.schedules import guidance_scales
from workers.pipeline import Conditioning, EncodedImage, SteerableVideoPipeline


@dataclass
class Inputs:
    """Decoded images of a job, by role."""

    keyframes: list[PIL.Image.Image]  # one entry when the job has a single `image`
    keyframe_positions: list[float]
    references: list[PIL.Image.Image] = field(default_factory=list)
    reference_weights: list[float] = field(default_factory=list)
    negative: PIL.Image.Image | None = None
    style: PIL.Image.Image | None = None
    sweep_image: PIL.Image.Image | None = None  # the end of an image sweep


@dataclass
class ClipParams:
    """What one clip of a sweep changes; the defaults are the job as written."""

    image_mix: float | None = None  # position on the path from `image` to `sweep.to`
    motion_bucket_id: int | None = None
    embedding_edits: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (D,), alpha (F,)


class Encoder:
    """Encodes each image once per job (a sweep reuses the encodings for every clip)."""

    def __init__(self, pipe: SteerableVideoPipeline, job: JobRequest, augmentation: torch.Tensor) -> None:
        gen = job.generation
        assert gen.height is not None and gen.width is not None
        self.pipe, self.height, self.width = pipe, gen.height, gen.width
        self.augmentation, self.strength = augmentation, gen.noise_aug_strength
        self._images: dict[int, EncodedImage] = {}
        self._embeddings: dict[int, torch.Tensor] = {}

    def image(self, image: PIL.Image.Image) -> EncodedImage:
        key = id(image)
        if key not in self._images:
            self._images[key] = self.pipe.encode_image(image, self.height, self.width, self.augmentation, self.strength)
        return self._images[key]

    def embedding(self, image: PIL.Image.Image) -> torch.Tensor:
        key = id(image)
        if key in self._images:
            return self._images[key].embedding
        if key not in self._embeddings:
            self._embeddings[key] = self.pipe.encode_image_embedding(image)
        return self._embeddings[key]


def frame_positions(num_frames: int) -> torch.Tensor:
    """t_f = f / (F - 1), float64."""
    return torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)


def interpolate_frames(
    values: torch.Tensor,
    positions: list[float],
    num_frames: int,
    method: Interpolation,
    penalty: GaussianPenalty | None = None,
    at: float | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-frame values (F, *shape) along the keyframe values (K, *shape) at `positions`
    (or the single value at position `at`, shaped (1, *shape)).

    Returns the values and a report: the method used and, for geodesic, path energies beside slerp's.
    """
    t = frame_positions(num_frames) if at is None else torch.tensor([at], dtype=torch.float64)
    out = values[0].unsqueeze(0).repeat(num_frames, *([1] * (values.ndim - 1)))
    out[t >= positions[-1]] = values[-1]
    num_frames = len(t)
    report: dict[str, Any] = {"method": str(method)}
    energies: list[tuple[float, float]] = []
    for k in range(len(positions) - 1):
        a, b = positions[k], positions[k + 1]
        inside = (t >= a) & (t < b)
        if not inside.any():
            continue
        u = ((t[inside] - a) / (b - a)).to(torch.float32)
        if method is Interpolation.linear:
            segment = lerp(values[k], values[k + 1], u)
        elif method is Interpolation.slerp or penalty is None:
            segment = slerp(values[k], values[k + 1], u)
        else:
            path = geodesic(values[k], values[k + 1], u, penalty=penalty)
            segment = path.points
            energies.append((path.energy, path.slerp_energy))
        out[inside] = segment.to(out.dtype)
    if method is Interpolation.geodesic:
        if penalty is None:
            report.update(method="slerp", fallback="geodesic needs a reference set; none for this space")
        else:
            report.update(
                energy=sum(e for e, _ in energies),
                slerp_energy=sum(s for _, s in energies),
            )
    return out, report


def reference_tokens(
    tokens: torch.Tensor, reference_embeddings: list[torch.Tensor], weights: list[float]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Append reference tokens to per-frame tokens (F, 1, D) → (F, 1 + R, D) and their bias (F, 1 + R).

    A reference of weight w enters the attention softmax as exp(s) · w: bias log w (−inf at w = 0,
    which removes the token exactly). Weight 1 makes it as strong as the image's own token.
    """
    if not reference_embeddings:
        return tokens, None
    num_frames = tokens.shape[0]
    refs = torch.stack(reference_embeddings).to(tokens.dtype)  # (R, D)
    tokens = torch.cat([tokens, refs.unsqueeze(0).expand(num_frames, -1, -1)], dim=1)
    logs = [0.0] + [math.log(w) if w > 0 else -math.inf for w in weights]
    bias = torch.tensor(logs, dtype=torch.float32).unsqueeze(0).expand(num_frames, -1).clone()
    return tokens, bias


def density_penalty(embeddings: torch.Tensor) -> GaussianPenalty | None:
    """The geodesic's manifold model, fitted to the job's own conditioning embeddings (N, D);
    None (geodesic falls back to slerp) when they have no spread to fit."""
    if torch.unique(embeddings, dim=0).shape[0] < 2:
        return None
    return GaussianPenalty.fit(embeddings)


def build_conditioning(
    pipe: SteerableVideoPipeline,
    job: JobRequest,
    inputs: Inputs,
    encoder: Encoder,
    clip: ClipParams | None = None,
) -> tuple[Conditioning, dict[str, Any]]:
    """One clip's conditioning (B = 1) and a report of how keyframes were interpolated."""
    gen = job.generation
    clip = clip or ClipParams()
    assert gen.num_frames is not None
    num_frames = gen.num_frames

    # 1. Encode keyframes (a single image is one keyframe held over the clip).
    keys = [encoder.image(image) for image in inputs.keyframes]
    embeddings = torch.stack([k.embedding for k in keys])  # (K, D)
    latents = torch.stack([k.latent for k in keys])  # (K, C, h, w)
    reference_embeddings = [encoder.embedding(image) for image in inputs.references]

    # 2. Interpolate per frame, in both conditioning spaces (an image sweep moves the one image).
    report: dict[str, Any] = {}
    if clip.image_mix is not None:
        assert inputs.sweep_image is not None
        end = encoder.image(inputs.sweep_image)
        method = job.sweep.interpolation if job.sweep else Interpolation.slerp
        penalty = None
        if method is Interpolation.geodesic:
            penalty = density_penalty(torch.stack([embeddings[0], end.embedding, *reference_embeddings]))
        pair = [0.0, 1.0]
        mix_embedding, report["embedding"] = interpolate_frames(
            torch.stack([embeddings[0], end.embedding]), pair, 1, method, penalty, at=clip.image_mix
        )
        mix_latent, report["image_latent"] = interpolate_frames(
            torch.stack([latents[0], end.latent]), pair, 1, method, None, at=clip.image_mix
        )
        embeddings, latents = mix_embedding, mix_latent
    if len(embeddings) == 1:
        frame_embeddings = embeddings.expand(num_frames, -1)
        frame_latents = latents.expand(num_frames, -1, -1, -1)
    else:
        method = job.interpolation
        penalty = None
        if method is Interpolation.geodesic:
            penalty = density_penalty(torch.cat([embeddings, *[e[None] for e in reference_embeddings]]))
        frame_embeddings, report["embedding"] = interpolate_frames(
            embeddings, inputs.keyframe_positions, num_frames, method, penalty
        )
        # VAE latents have no density model here (tens of thousands of dims, a handful of samples):
        # geodesic falls back to slerp in this space, and the report says so.
        frame_latents, report["image_latent"] = interpolate_frames(
            latents, inputs.keyframe_positions, num_frames, method, None
        )

    # 3. Semantic directions in the embedding space act on the positive image token, per frame.
    for vector, alpha in clip.embedding_edits:
        frame_embeddings = apply_direction(frame_embeddings, vector.to(frame_embeddings), alpha)

    # 4. Tokens: the image's embedding per frame, then weighted reference tokens.
    tokens, bias = reference_tokens(frame_embeddings[:, None, :], reference_embeddings, inputs.reference_weights)

    # 5. The unconditional branch: zeros, as in SVD, or the negative image.
    if inputs.negative is not None:
        negative = encoder.image(inputs.negative)
        negative_tokens = torch.zeros_like(tokens)
        negative_tokens[:, 0] = negative.embedding
        negative_latents = negative.latent.expand(num_frames, -1, -1, -1)
    else:
        negative_tokens = torch.zeros_like(tokens)
        negative_latents = torch.zeros_like(frame_latents)

    # 6. Extra time ids and per-frame guidance.
    motion = gen.motion_bucket_id if clip.motion_bucket_id is None else clip.motion_bucket_id
    time_ids = pipe.time_ids(gen.fps, motion, gen.noise_aug_strength)
    guidance = guidance_scales(gen.guidance.min, gen.guidance.max, num_frames, str(gen.guidance.shape))

    conditioning = Conditioning(
        tokens=tokens[None].contiguous(),
        negative_tokens=negative_tokens[None].contiguous(),
        token_bias=None if bias is None else bias[None],
        image_latents=frame_latents[None].contiguous(),
        negative_image_latents=negative_latents[None].contiguous(),
        added_time_ids=time_ids[None],
        guidance=guidance[None],
    )
    return conditioning, report
