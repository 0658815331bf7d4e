"""The pieces of a bidirectional step: each one as diffusers' Euler scheduler takes it, or as its formula says."""

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from steering.sampling import denoised_estimate, euler_step, flip_frames, hold_ends, renoise, scale_input
from workers.tiny import SVD_SCHEDULER


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_scale_estimate_and_euler_step_are_the_schedulers():
    prediction_type = "v_prediction"  # SVD's
    scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER)
    scheduler.set_timesteps(5)
    sample, output = randn(1, 3, 4, 8, 8, seed=1) * 20, randn(1, 3, 4, 8, 8, seed=2)
    for i, t in enumerate(scheduler.timesteps):
        sigma, sigma_next = scheduler.sigmas[i], scheduler.sigmas[i + 1]
        assert torch.equal(scale_input(sample, sigma), scheduler.scale_model_input(sample, t))
        stepped = scheduler.step(output, t, sample)
        denoised = denoised_estimate(output, sample, sigma, prediction_type)
        assert torch.allclose(denoised, stepped.pred_original_sample, rtol=0, atol=1e-6)
        assert torch.allclose(euler_step(sample, denoised, sigma, sigma_next), stepped.prev_sample, rtol=0, atol=1e-5)
        sample = stepped.prev_sample
    # The last step lands on the estimate itself (sigma 0).
    assert float(scheduler.sigmas[-1]) == 0.0


def test_an_epsilon_estimate_takes_the_noise_away():
    sample, noise = randn(4, seed=6), randn(4, seed=7)
    assert torch.allclose(denoised_estimate(noise, sample + 2.0 * noise, 2.0, "epsilon"), sample, atol=1e-6)


def test_an_unknown_prediction_type_is_refused():
    with pytest.raises(ValueError, match="prediction type"):
        denoised_estimate(torch.zeros(1), torch.zeros(1), 1.0, "sample")


def test_renoise_adds_the_variance_between_the_sigmas():
    sample, noise = torch.zeros(200_000), randn(200_000, seed=3)
    back = renoise(sample, torch.tensor(3.0), torch.tensor(5.0), noise)
    assert torch.equal(back, 4.0 * noise)  # sqrt(5² − 3²)
    assert abs(float(back.std()) - 4.0) < 0.05
    assert torch.equal(renoise(sample + 1, 2.0, 2.0, noise), sample + 1)  # same sigma: unchanged


def test_hold_ends_replaces_the_first_and_last_frames_only():
    denoised, ends = randn(2, 5, 4, 3, 3, seed=4), randn(2, 2, 4, 3, 3, seed=5)
    held = hold_ends(denoised, ends)
    assert torch.equal(held[:, 0], ends[:, 0]) and torch.equal(held[:, -1], ends[:, 1])
    assert torch.equal(held[:, 1:-1], denoised[:, 1:-1])
    assert not torch.equal(denoised[:, 0], ends[:, 0])  # the input is left as it was


def test_flip_frames_reverses_time_and_is_its_own_inverse():
    latents = torch.arange(2 * 4 * 1).reshape(2, 4, 1).float()
    assert flip_frames(latents)[:, 0].tolist() == latents[:, -1].tolist()
    assert torch.equal(flip_frames(flip_frames(latents)), latents)
