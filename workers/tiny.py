"""A tiny but real SVD: diffusers' own components built from small configs.

It exercises the same code paths as SVD-XT (temporal UNet, temporal VAE decoder, CLIP image encoder,
Euler v-prediction scheduler with Karras sigmas) at a size that runs in well under a second on a CPU,
and it is saved with `save_pretrained`, so it loads through the same `from_pretrained` path as real
weights. Its outputs are noise-like: the weights are random.
"""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

# The defaults the registry gives the tiny model (SVD-XT's are 1024x576, 25 frames).
TINY_DEFAULTS = {"width": 64, "height": 64, "num_frames": 6}

# SVD's published scheduler configuration, so the tiny model samples exactly as the real one does.
SVD_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}


def small_unet(
    block_out_channels: tuple[int, int], heads: tuple[int, int], num_frames: int
) -> UNetSpatioTemporalConditionModel:
    """SVD's temporal UNet at 64x64 (8x8 latents) with two stages, cross-attending to 32-wide tokens."""
    return UNetSpatioTemporalConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=block_out_channels,
        layers_per_block=1,
        cross_attention_dim=32,
        num_attention_heads=heads,
        addition_time_embed_dim=32,
        projection_class_embeddings_input_dim=96,
        num_frames=num_frames,
    )


def small_vae(block_out_channels: tuple[int, int, int, int]) -> AutoencoderKLTemporalDecoder:
    """SVD's temporal VAE at 64x64: four stages, 8x downsampling, 4 latent channels."""
    return AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        block_out_channels=block_out_channels,
        latent_channels=4,
        sample_size=64,
    )


def small_image_encoder() -> CLIPVisionModelWithProjection:
    """A two-layer CLIP vision tower with a 32-wide projection (random weights)."""
    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=224,
            patch_size=32,
        )
    )


def small_pipeline(
    unet: UNetSpatioTemporalConditionModel,
    vae: AutoencoderKLTemporalDecoder,
    image_encoder: CLIPVisionModelWithProjection,
) -> StableVideoDiffusionPipeline:
    """The stock pipeline around small components, with SVD's scheduler."""
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER),
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )


def build_tiny_svd(seed: int = 0) -> StableVideoDiffusionPipeline:
    """Random-weight SVD components from small configs; VAE downsampling is 8x, as in SVD."""
    torch.manual_seed(seed)
    # Built in this order, so that a seed gives the weights it always gave.
    unet = small_unet((32, 64), (2, 4), TINY_DEFAULTS["num_frames"])
    vae = small_vae((32, 32, 32, 32))
    return small_pipeline(unet, vae, small_image_encoder())


def save_tiny_svd(path: Path, seed: int = 0) -> Path:
    """Build the tiny SVD and `save_pretrained` it to `path` (safetensors)."""
    path = Path(path)
    build_tiny_svd(seed).save_pretrained(path, safe_serialization=True)
    return path
