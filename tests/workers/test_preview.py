"""Live previews: the latent → RGB map, the strip, when previews are made, and what they show."""

import io
from pathlib import Path
from types import SimpleNamespace

import PIL.Image
import pytest
import torch

from api_schemas import JobRequest
from workers.engine import Preview, run_job
from workers.images import ImageResolver
from workers.models import ModelSpec, load_model
from workers.preview import (
    MAX_WIDTH,
    LatentRGB,
    fit_affine,
    fit_latent_rgb,
    preview_steps,
    preview_strip,
)
from workers.settings import EngineSettings
from workers.tiny import TINY_DEFAULTS


def test_fit_affine_recovers_a_known_map_exactly():
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(3, 4, generator=generator), torch.randn(3, generator=generator)
    latents = torch.randn(5, 4, 6, 7, generator=generator)
    colours = torch.einsum("oc,nchw->nohw", weight, latents) + bias[:, None, None]
    fitted = fit_affine(latents, colours)
    torch.testing.assert_close(fitted.weight, weight, atol=1e-5, rtol=0)
    torch.testing.assert_close(fitted.bias, bias, atol=1e-5, rtol=0)
    # Applied, the map gives those colours moved from [-1, 1] to [0, 1] (clamped), channels last.
    expected = ((colours[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0)
    torch.testing.assert_close(torch.from_numpy(fitted.colours(latents[0].numpy())), expected, atol=1e-5, rtol=0)


def test_a_map_from_rows_round_trips_and_refuses_bad_shapes():
    rows = [[0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 1.0, 0.0, 0.0, -0.1], [1.0, 0.0, 0.0, 0.0, 0.0]]
    assert LatentRGB.from_rows(rows).rows() == [pytest.approx(row) for row in rows]
    assert LatentRGB.from_rows(rows).channels == 4
    for bad in ([[1.0, 2.0]] * 2, [[1.0]] * 3, [[1.0, float("nan")]] * 3):
        with pytest.raises(ValueError, match="3 rows of finite numbers"):
            LatentRGB.from_rows(bad)


class LinearPatchVAE(torch.nn.Module):
    """A stand-in VAE whose decoder is a known affine map of each latent pixel to its 8×8 patch's colour
    (and whose encoder gives four independent channels), so the fitted preview map has a known answer:
    the decoder's map divided by the scaling factor."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(scaling_factor=0.5)
        self.weight = torch.tensor([[0.6, -0.2, 0.1, 0.3], [0.1, 0.7, -0.3, 0.0], [-0.2, 0.1, 0.8, -0.4]])
        self.bias = torch.tensor([0.05, -0.1, 0.2])
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device and a dtype

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def encode(self, pictures: torch.Tensor) -> SimpleNamespace:
        patches = torch.nn.functional.avg_pool2d(pictures, 8)
        latents = torch.cat([patches, patches.mean(dim=1, keepdim=True) ** 2], dim=1)
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: latents))

    def decode(self, latents: torch.Tensor, num_frames: int) -> SimpleNamespace:
        colours = torch.einsum("oc,nchw->nohw", self.weight, latents) + self.bias[:, None, None]
        return SimpleNamespace(sample=torch.nn.functional.interpolate(colours, scale_factor=8, mode="nearest"))


def test_the_map_fitted_from_a_vae_is_its_decoders_map_on_the_scaled_latents():
    vae = LinearPatchVAE()
    fitted = fit_latent_rgb(SimpleNamespace(vae=vae, vae_scale_factor=8), samples=6, size=64)
    # The UNet's latents are the VAE's times the scaling factor: the map divides it out.
    torch.testing.assert_close(fitted.weight, vae.weight / vae.config.scaling_factor, atol=1e-4, rtol=0)
    torch.testing.assert_close(fitted.bias, vae.bias, atol=1e-4, rtol=0)


def test_the_tiny_models_map_is_fitted_at_load(registry):
    colour_map = registry.get("tiny").preview
    assert colour_map is not None and colour_map.channels == 4
    assert torch.isfinite(colour_map.weight).all() and colour_map.weight.abs().sum() > 0


def test_a_model_spec_map_is_used_and_checked_against_the_latent_channels(tiny_model_dir):
    rows = ((0.5, 0.0, 0.0, 0.0, 0.0), (0.0, 0.5, 0.0, 0.0, 0.0), (0.0, 0.0, 0.5, 0.0, 0.0))
    spec = ModelSpec(name="tiny", source=str(tiny_model_dir), preview_map=rows, **TINY_DEFAULTS)  # type: ignore[arg-type]
    loaded = load_model(spec).preview
    assert loaded is not None
    assert loaded.rows() == [pytest.approx(row) for row in rows]
    three = tuple(row[1:] for row in rows)
    with pytest.raises(ValueError, match="`preview_map` has 3 channel weights, the UNet makes 4"):
        load_model(ModelSpec(name="tiny", source=str(tiny_model_dir), preview_map=three, **TINY_DEFAULTS))  # type: ignore[arg-type]


@pytest.mark.parametrize(("frames", "size"), [(5, (8, 8)), (25, (72, 128)), (1, (300, 400))])
def test_a_strip_is_a_jpeg_at_most_256_pixels_wide(frames, size):
    colour_map = LatentRGB(torch.eye(3, 4), torch.zeros(3))
    jpeg = preview_strip(torch.randn(frames, 4, *size), colour_map)
    image = PIL.Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG"
    assert image.width <= MAX_WIDTH
    shown = min(frames, 4)
    # Frames keep their aspect ratio side by side (to a pixel of rounding).
    assert image.width / shown / image.height == pytest.approx(size[1] / size[0], abs=0.05)


def test_preview_steps_are_few_evenly_spread_and_end_on_the_last_step():
    assert preview_steps(25, 10) == {25, 22, 19, 16, 13, 10, 7, 4, 1}
    assert preview_steps(4, 10) == {1, 2, 3, 4}
    assert preview_steps(100, 10) == set(range(10, 101, 10))
    assert preview_steps(25, 0) == frozenset()
    for total in range(1, 60):
        steps = preview_steps(total, 10)
        assert len(steps) <= 10 and total in steps


def test_the_engine_sends_previews_of_the_denoised_estimate(registry, image_paths, tmp_path: Path, monkeypatch):
    """The last preview is the final latents' strip: at the last Euler step (σ → 0) the denoised
    estimate is where the sampler lands."""
    request = JobRequest.model_validate(
        {
            "seed": 3,
            "image": str(image_paths[0]),
            "generation": {"width": 64, "height": 64, "num_frames": 5, "steps": 6},
        }
    )
    model = registry.get("tiny")
    finals: list[torch.Tensor] = []
    pipe_call = type(model.pipeline).__call__

    def capture(self, *args, **kwargs):
        latents = pipe_call(self, *args, **kwargs)
        finals.append(latents)
        return latents

    previews: list[Preview] = []
    resolver = ImageResolver(allow_paths=True)
    settings = EngineSettings(previews=4)
    monkeypatch.setattr(type(model.pipeline), "__call__", capture)
    outputs = run_job(
        request, tmp_path, registry=registry, images=resolver, on_preview=previews.append, settings=settings
    )
    monkeypatch.undo()
    assert outputs.metrics["denoise_steps"] == 6  # what the worker divides the denoise stage by
    assert [(p.step, p.total) for p in previews] == [(2, 6), (4, 6), (6, 6)]
    assert previews[-1].jpeg == preview_strip(finals[0][0], model.preview)
    assert previews[0].jpeg != previews[-1].jpeg

    none: list[Preview] = []
    run_job(
        request,
        tmp_path / "off",
        registry=registry,
        images=resolver,
        on_preview=none.append,
        settings=EngineSettings(previews=0),
    )
    assert none == []
