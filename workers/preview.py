"""Live previews: what the denoised estimate looks like, every few steps, without the VAE decoder.

A diffusion model's latents are close to a picture already: each latent pixel stands for an 8×8 patch
and its few channels map nearly linearly to that patch's mean colour. So a preview is one small affine
map per model (latent channels → RGB, `LatentRGB`) applied to the sampler's denoised estimate, cut to
a strip of a few frames at most `MAX_WIDTH` pixels wide and written as a JPEG: microseconds of work
where decoding the same frames would cost a good part of a denoising step.

The map is the least-squares fit (`fit_affine`) from latents to the mean colour of the patches the
model's own VAE decodes them to (`fit_latent_rgb`, once at load, on a few synthetic pictures), or the
matrix a model spec gives (`ModelSpec.preview_map`).
"""

import base64
import io
import math
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

MAX_WIDTH = 256  # pixels across the whole strip
STRIP_FRAMES = 4  # frames in a strip, evenly spread over the clip (first and last among them)
JPEG_QUALITY = 80


@dataclass(frozen=True)
class LatentRGB:
    """rgb = weight @ latent + bias, per latent pixel, in the decoder's [-1, 1] range."""

    weight: torch.Tensor  # (3, C), float32 on the CPU
    bias: torch.Tensor  # (3,)

    @classmethod
    def from_rows(cls, rows: list[list[float]] | tuple[tuple[float, ...], ...]) -> "LatentRGB":
        """From three rows of C weights and the bias last (the form a model spec writes)."""
        matrix = torch.tensor(rows, dtype=torch.float32)
        if matrix.ndim != 2 or matrix.shape[0] != 3 or matrix.shape[1] < 2 or not torch.isfinite(matrix).all():
            raise ValueError("`preview_map` must be 3 rows of finite numbers: C channel weights, then the bias")
        return cls(matrix[:, :-1].contiguous(), matrix[:, -1].contiguous())

    def rows(self) -> list[list[float]]:
        return torch.cat([self.weight, self.bias[:, None]], dim=1).tolist()

    @property
    def channels(self) -> int:
        return int(self.weight.shape[1])

    def colours(self, latents: np.ndarray) -> np.ndarray:
        """(..., C, h, w) latents on the host → (..., h, w, 3) colours in [0, 1], float32, mapped with
        numpy in one thread: microseconds for a preview's few frames, and clear of torch's thread pool
        (whose threads spin for their turn on a busy CPU)."""
        rgb = np.einsum("oc,...chw->...hwo", self.weight.numpy(), latents.astype(np.float32)) + self.bias.numpy()
        return np.clip((rgb + 1) / 2, 0, 1).astype(np.float32)


def fit_affine(latents: torch.Tensor, colours: torch.Tensor) -> LatentRGB:
    """The least-squares affine map from `latents` (N, C, h, w) to `colours` (N, 3, h, w)."""
    x = latents.double().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    y = colours.double().permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # (C + 1, 3)
    return LatentRGB(solution[:-1].T.float().contiguous(), solution[-1].float().contiguous())


def sample_pictures(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """`count` synthetic pictures (count, 3, size, size) in [-1, 1]: smooth colour fields (a random
    4×4 grid of colours, bilinearly upsampled) plus a few flat blocks, so that every channel's range
    is seen."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
    pictures = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)
    block = size // 4
    for index in range(count):
        y, x = (int(v) for v in torch.randint(0, size - block, (2,), generator=generator))
        pictures[index, :, y : y + block, x : x + block] = (torch.rand(3, 1, 1, generator=generator) * 2 - 1).expand(
            3, block, block
        )
    return pictures


@torch.no_grad()
def fit_latent_rgb(pipe: object, samples: int = 6, size: int = 64, seed: int = 0) -> LatentRGB:
    """Fit the preview map of a loaded pipeline from its own VAE: encode synthetic pictures, decode
    their latents, and map each latent pixel to the mean colour of the patch it decodes to. The
    latents are scaled as the UNet sees them (`scaling_factor`)."""
    vae = pipe.vae  # type: ignore[attr-defined]
    factor = int(pipe.vae_scale_factor)  # type: ignore[attr-defined]
    size = max(size, factor * 4) // factor * factor
    device, dtype = vae.device, vae.dtype
    # A half-precision VAE that asks for it runs this in float32, as the pipeline's own encode does.
    upcast = dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        pictures = sample_pictures(samples, size, seed).to(device, vae.dtype)
        latents = vae.encode(pictures).latent_dist.mode() * vae.config.scaling_factor
        decoded = vae.decode(latents / vae.config.scaling_factor, num_frames=samples).sample
    finally:
        if upcast:
            vae.to(dtype=dtype)
    colours = F.avg_pool2d(decoded.float().clamp(-1, 1), factor)
    fitted = fit_affine(latents.float().cpu(), colours.cpu())
    if not (torch.isfinite(fitted.weight).all() and torch.isfinite(fitted.bias).all()):
        raise ValueError("the preview map fitted from the VAE is not finite; give `preview_map` in the model spec")
    return fitted


def preview_strip(latents: torch.Tensor, colour_map: LatentRGB, max_width: int = MAX_WIDTH) -> bytes:
    """A JPEG of up to `STRIP_FRAMES` frames of one clip's latents (F, C, h, w), side by side, at most
    `max_width` pixels wide (each frame scaled up by a whole factor where there is room). Only the
    picked frames are copied to the host; their colours are mapped with numpy and the strip resized
    and written with Pillow."""
    frames = latents.shape[0]
    picks = sorted({round(i * (frames - 1) / max(1, STRIP_FRAMES - 1)) for i in range(min(frames, STRIP_FRAMES))})
    # Frame by frame to the host: a view each (a copy from the GPU), no indexing kernel.
    picked = np.stack([latents[i].detach().float().cpu().numpy() for i in picks])
    rgb = colour_map.colours(picked)  # (n, h, w, 3) in [0, 1]
    n, h, w, _ = rgb.shape
    strip = np.concatenate(list(rgb), axis=1)  # (h, n·w, 3)
    image = PIL.Image.fromarray((strip * 255).round().astype(np.uint8))
    if n * w > max_width:  # wider than allowed even at latent size: shrink
        image = image.resize((max_width, max(1, round(h * max_width / (n * w)))), PIL.Image.Resampling.BOX)
    elif (scale := max_width // (n * w)) > 1:
        image = image.resize((n * w * scale, h * scale), PIL.Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def preview_steps(total: int, most: int) -> frozenset[int]:
    """The steps (1-based, of `total`) after which a preview is made: at most `most`, evenly spread,
    the last step among them (none when `most` is 0)."""
    if most <= 0 or total <= 0:
        return frozenset()
    every = math.ceil(total / most)
    return frozenset(range(total, 0, -every))
