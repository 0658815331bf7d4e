"""The pieces of a bidirectional sampling step: Euler in Karras' sigma parametrisation, taken apart.

A bidirectional step (ViBiDSampler, Yang et al., ICLR 2025; Time Reversal Fusion, Feng et al.,
ECCV 2024) takes the latents x at sigma σ_i to σ_{i+1} conditioned on the first frame, puts them back
to σ_i with fresh noise, and takes them to σ_{i+1} again time-flipped, conditioned on the last frame;
the denoised estimate's end frames are held to the two keyframes (a DDS-style projection, Chung et
al., ICLR 2024). These functions are those steps, as in diffusers' `EulerDiscreteScheduler` (no
churn): the scheduler's own `step` keeps its step counter, which a step taken twice would confuse.

Latents are (B, F, C, h, w); sigmas are 0-d tensors or numbers. Inputs are never modified and the
dtype of `sample` is kept.
"""

from torch import Tensor

__all__ = ["denoised_estimate", "euler_step", "flip_frames", "hold_ends", "renoise", "scale_input"]


def scale_input(sample: Tensor, sigma: Tensor | float) -> Tensor:
    """The UNet's input at sigma: x / sqrt(σ² + 1) (diffusers' `scale_model_input` for Euler)."""
    return sample / ((sigma**2 + 1) ** 0.5)


def denoised_estimate(model_output: Tensor, sample: Tensor, sigma: Tensor | float, prediction_type: str) -> Tensor:
    """x̂₀ from the model's output at sigma: v-prediction (SVD) x̂₀ = −σ/sqrt(σ²+1)·v + x/(σ²+1);
    epsilon x̂₀ = x − σ·ε."""
    if prediction_type == "v_prediction":
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    raise ValueError(f"prediction type must be `v_prediction` or `epsilon`, got {prediction_type!r}")


def euler_step(sample: Tensor, denoised: Tensor, sigma: Tensor | float, sigma_next: Tensor | float) -> Tensor:
    """One Euler step of the probability-flow ODE dx/dσ = (x − x̂₀)/σ from σ to σ_next (0 gives x̂₀)."""
    derivative = (sample - denoised) / sigma
    return sample + derivative * (sigma_next - sigma)


def renoise(sample: Tensor, sigma: Tensor | float, sigma_back: Tensor | float, noise: Tensor) -> Tensor:
    """Latents at `sigma` put back to the larger `sigma_back`: x + sqrt(σ_back² − σ²)·ε, with unit noise ε."""
    return sample + ((sigma_back**2 - sigma**2) ** 0.5) * noise


def flip_frames(latents: Tensor) -> Tensor:
    """The frames in reverse order: (B, F, …) with frame f at F − 1 − f."""
    return latents.flip(1)


def hold_ends(denoised: Tensor, ends: Tensor) -> Tensor:
    """`denoised` (B, F, C, h, w) with its first and last frames replaced by `ends` (B, 2, C, h, w):
    the projection of the estimate onto the latents whose end frames are the keyframes'."""
    held = denoised.clone()
    held[:, 0] = ends[:, 0].to(held.dtype)
    held[:, -1] = ends[:, 1].to(held.dtype)
    return held
