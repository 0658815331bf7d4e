"""AdaIN on (B, F, C, H, W) latents and strength blending."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.adain import adain, blend, channel_stats

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _latents(seed: int, shape: tuple[int, ...] = (2, 3, 4, 8, 8), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # per-channel offsets and scales so the statistics differ between channels
    scale = torch.rand(shape[2], 1, 1, generator=g) * 3 + 0.5
    shift = torch.randn(shape[2], 1, 1, generator=g) * 2
    return (torch.randn(shape, generator=g) * scale + shift).to(dtype)


def test_channel_stats_shapes_and_values() -> None:
    x = _latents(0)
    mean, std = channel_stats(x)
    assert mean.shape == std.shape == (2, 3, 4, 1, 1)
    torch.testing.assert_close(mean[1, 2, 3, 0, 0], x[1, 2, 3].mean())
    torch.testing.assert_close(std[1, 2, 3, 0, 0], torch.sqrt(x[1, 2, 3].var(correction=0) + 1e-5))
    mean_f, std_f = channel_stats(x, over_frames=True)
    assert mean_f.shape == std_f.shape == (2, 1, 4, 1, 1)
    torch.testing.assert_close(mean_f[1, 0, 3, 0, 0], x[1, :, 3].mean())
    torch.testing.assert_close(std_f[1, 0, 3, 0, 0], torch.sqrt(x[1, :, 3].var(correction=0) + 1e-5))


@settings(max_examples=25, deadline=None)
@given(seed=seeds, over_frames=st.booleans())
def test_adain_matches_the_target_statistics(seed: int, over_frames: bool) -> None:
    z = _latents(seed)
    style = _latents(seed + 1, (1, 1, 4, 16, 16))
    s_mean, s_std = channel_stats(style, over_frames=True, eps=0.0)
    out = adain(z, s_mean, s_std, over_frames=over_frames)
    mean, std = channel_stats(out, over_frames=over_frames, eps=0.0)
    # Tolerance: float32 sums over 64 (or 192) elements are accurate to ~1e-6 relative, and the eps = 1e-5
    # inside σ(z) = sqrt(Var + eps) shrinks the output std by a factor sqrt(Var/(Var + eps)), i.e. by at
    # most eps/(2·Var) ≈ 2e-5 relative for the smallest channel variance here (0.25); 1e-4 covers both.
    torch.testing.assert_close(mean, s_mean.expand_as(mean), atol=1e-4 * float(s_std.max()), rtol=0)
    torch.testing.assert_close(std, s_std.expand_as(std), rtol=1e-4, atol=0)
    # the input was not restyled in place, and its own statistics were different
    assert not torch.allclose(channel_stats(z, over_frames=over_frames)[0], s_mean.expand_as(mean), atol=1e-2)


def test_adain_with_its_own_statistics_is_nearly_the_identity() -> None:
    z = _latents(3, dtype=torch.float64)
    mean, std = channel_stats(z)
    torch.testing.assert_close(adain(z, mean, std), z, atol=1e-12, rtol=0)
    assert adain(z.half(), mean.half(), std.half()).dtype == torch.float16


def test_adain_checks_statistics_shapes() -> None:
    z = _latents(0)
    mean, std = channel_stats(z)
    with pytest.raises(ValueError, match="style_mean"):
        adain(z, torch.zeros(4), std)
    with pytest.raises(ValueError, match="style_std"):
        adain(z, mean, torch.ones(5, 1, 1))
    with pytest.raises(ValueError, match=">= 0"):
        adain(z, mean, -std)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_blend_ends_are_exact(dtype: torch.dtype) -> None:
    z = _latents(0, dtype=dtype)
    target = _latents(1, dtype=dtype)
    z0, t0 = z.clone(), target.clone()
    assert torch.equal(blend(z, target, 0.0), z)
    assert torch.equal(blend(z, target, 1.0), target)
    mid = blend(z, target, 0.25)
    assert mid.dtype == dtype
    torch.testing.assert_close(mid, (0.75 * z.double() + 0.25 * target.double()).to(dtype))
    assert torch.equal(z, z0) and torch.equal(target, t0)
    with pytest.raises(ValueError, match="strength"):
        blend(z, target, 1.5)
