"""A tiny but real SVD: diffusers' own components built from small configs.

It exercises the same code paths as SVD-XT (temporal UNet, temporal VAE decoder, CLIP image encoder,
Euler v-prediction scheduler with Karras sigmas) at a size that runs in well under a second on a CPU,
and it is saved with `save_pretrained`, so it loads through the same `from_pretrained` path as real
weights. Its outputs are noise-like: the weights are random.

Beside the pipeline it keeps a tiny CLIP text tower (`text_encoder/`, projecting to the image
encoder's width) and a byte-level BPE tokenizer made in code (`tokenizer/`), so text directions run
without anything downloaded.
"""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from tokenizers import pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

# The defaults the registry gives the tiny model (SVD-XT's are 1024x576, 25 frames).
TINY_DEFAULTS = {"width": 64, "height": 64, "num_frames": 6}

# The tiny tokenizer's merges beyond single bytes: a few, so that words become several tokens as in CLIP.
TINY_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("in", "g</w>"), ("e", "r"), ("o", "n")]
TINY_CONTEXT = 16  # tokens per prompt (CLIP's is 77)

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


def small_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE tokenizer over a vocabulary made here: the start and end tokens, the 256
    byte symbols alone and at a word's end, and `TINY_MERGES`."""
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(pair) for pair in TINY_MERGES]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=list(TINY_MERGES), model_max_length=TINY_CONTEXT)


def small_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    """A two-layer CLIP text tower projecting to the tiny image encoder's 32 dimensions (random weights)."""
    return CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=TINY_CONTEXT,
            # CLIP pools the end-of-text token's state: the ids must be the tokenizer's.
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
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


def build_tiny_text(seed: int = 0) -> tuple[CLIPTextModelWithProjection, CLIPTokenizer]:
    """The tiny text tower and its tokenizer; their own seed, so the pipeline's weights stay those
    `build_tiny_svd` always gave, and the global random state is left as it was."""
    tokenizer = small_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return small_text_encoder(tokenizer), tokenizer


def save_tiny_text(path: Path, seed: int = 0) -> Path:
    """`save_pretrained` the tiny text tower and tokenizer into `path/text_encoder` and `path/tokenizer`."""
    path = Path(path)
    text_encoder, tokenizer = build_tiny_text(seed)
    text_encoder.save_pretrained(path / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(path / "tokenizer")
    return path


def save_tiny_svd(path: Path, seed: int = 0) -> Path:
    """Build the tiny SVD and `save_pretrained` it to `path` (safetensors), its text tower beside it."""
    path = Path(path)
    build_tiny_svd(seed).save_pretrained(path, safe_serialization=True)
    return save_tiny_text(path, seed)
