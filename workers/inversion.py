"""Running clean latents backwards through SVD's Euler ODE: where a real clip's edit starts when
`video.noise` is `inverted`.

Sampling takes Euler steps of the probability-flow ODE dx/dσ = (x − D(x, σ)) / σ down the schedule
σ_0 > … > σ_S = 0, where D is the denoised estimate of the guided UNet. Inversion takes the same steps
up the schedule: from x at σ_{i+1} to σ_i it moves by (σ_i − σ_{i+1}) · (x − D(x, σ_i)) / σ_i, i from
S − 1 down to the first step of the edit. The derivative is taken at the step's target sigma (as DDIM
inversion takes the noise prediction of the next timestep, Song et al. 2021; Mokady et al. 2023), so
every UNet call is at a timestep of the sampling schedule and the first never divides by σ_S = 0.
Sampling then retraces the steps, each at its own sigma: a clip inverted and resampled with the same
conditioning comes back close to itself, where random noise at the same sigma gives a new clip.

The UNet is called as `SteerableVideoPipeline.__call__` calls it (per-frame context in the attention
processors, the channel concat of the image latents, per-frame guidance), one call per step inverted.
"""

from collections.abc import Callable

import torch

from workers.pipeline import Conditioning, SteerableVideoPipeline


def denoised(prediction_type: str, output: torch.Tensor, sample: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Euler scheduler's estimate of the clean latents from the UNet's `output` at `sigma`."""
    if prediction_type == "v_prediction":
        return output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
    if prediction_type == "epsilon":
        return sample - sigma * output
    if prediction_type == "sample":
        return output
    raise ValueError(f"inversion does not support prediction type {prediction_type!r}")


@torch.no_grad()
def invert(
    pipe: SteerableVideoPipeline,
    conditioning: Conditioning,
    clean: torch.Tensor,
    steps: int,
    first_step: int,
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Latents (B, F, C, h, w) at the sigma before step `first_step` of a `steps`-step schedule, from
    `clean` latents (scaled, as denoising holds them) run backwards under `conditioning`. `on_step(i)`
    is called after the step that reaches σ_i (it may raise to stop)."""
    device = pipe._execution_device
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=device)
    sigmas = [float(s) for s in scheduler.sigmas]
    timesteps = scheduler.timesteps
    prediction_type = str(scheduler.config.prediction_type)
    do_cfg = conditioning.do_classifier_free_guidance
    image_latents, context, bias = pipe.assemble(conditioning, do_cfg)
    guidance = conditioning.guidance.to(device=device, dtype=torch.float32)[:, :, None, None, None]
    latents = clean.to(device=device, dtype=torch.float32)
    num_frames = latents.shape[1]
    pipe._fill_slot(context, bias, num_frames)
    try:
        for i in reversed(range(first_step, steps)):
            sigma, t = sigmas[i], timesteps[i]
            scaled = latents / (sigma**2 + 1) ** 0.5  # the Euler scheduler's `scale_model_input`
            output = pipe.guided_prediction(scaled, t, image_latents, context, guidance, do_cfg)
            derivative = (latents - denoised(prediction_type, output, latents, sigma)) / sigma
            latents = latents + (sigma - sigmas[i + 1]) * derivative
            if on_step is not None:
                on_step(i)
    finally:
        pipe._fill_slot(None, None, num_frames)
    return latents
