"""The steerable SVD pipeline: diffusers' `StableVideoDiffusionPipeline` with per-frame conditioning.

Two seams, and no others:

* **Conditioning** arrives precomputed as a `Conditioning` (per clip, per frame): CLIP tokens with
  per-token attention weights, VAE image latents, extra time ids and per-frame guidance scales. It
  reaches the UNet's cross-attention through attention processors (`set_attn_processor`), because
  the UNet repeats one context for every frame internally; the processors substitute the per-frame
  context and add the log-weights of reference tokens to the attention logits.
* **Latents** change only through `callback_on_step_end`, as in diffusers.

`__call__` below follows diffusers 0.42.1 `StableVideoDiffusionPipeline.__call__` step for step
(scale_model_input, channel concat, guidance, `scheduler.step`), so a job with no steering gives the
same frames as the stock pipeline to float rounding; the tests hold it to 1e-5.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from steering.sampling import denoised_estimate, euler_step, flip_frames, hold_ends, renoise, scale_input
from workers.corpus import EmbeddingCache

StepCallback = Callable[[Any, int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class Conditioning:
    """Everything the denoiser is conditioned on, for B clips of F frames.

    Shapes: `tokens` / `negative_tokens` (B, F, T, D) CLIP tokens (token 0 is the image embedding,
    tokens 1.. are references); `token_bias` (B, F, T) additive attention-logit bias for the positive
    half (log of the token weights; `None` when T == 1); `image_latents` / `negative_image_latents`
    (B, F, C, h, w) unscaled VAE latents; `added_time_ids` (B, 3) = [fps - 1, motion_bucket_id,
    noise_aug_strength]; `guidance` (B, F) classifier-free guidance scale per frame.
    """

    tokens: torch.Tensor
    negative_tokens: torch.Tensor
    token_bias: torch.Tensor | None
    image_latents: torch.Tensor
    negative_image_latents: torch.Tensor
    added_time_ids: torch.Tensor
    guidance: torch.Tensor
    reverse: "TimeReversal | None" = None
    """Set for bidirectional sampling: the time-flipped pass of every step (`TimeReversal`)."""

    @property
    def do_classifier_free_guidance(self) -> bool:
        # diffusers' rule: guidance is on when any frame's scale exceeds 1.
        return bool(self.guidance.max() > 1)


@dataclass
class TimeReversal:
    """The second pass of a bidirectional step (ViBiDSampler, ICLR 2025; Time Reversal Fusion, ECCV
    2024), for the same B clips of F frames as the `Conditioning` that holds it.

    Each step runs twice: an Euler step under the forward conditioning, the result put back to the
    step's sigma with fresh noise, then an Euler step of the frames flipped in time under
    `conditioning` (its per-frame values are in flipped order: its frame 0 is the clip's last). Both
    passes hold the denoised estimate's first and last frames to `ends` (B, 2, C, h, w), scaled
    latents as the VAE decodes them. The noise comes from a generator seeded with `seed`, drawn
    after what `draw_noise` draws from it (the job seed's stream, continued), one (1, F, C, h, w)
    draw per step shared by the B clips.
    """

    conditioning: Conditioning
    ends: torch.Tensor
    seed: int


@dataclass
class Slot:
    """What the attention processors read during one UNet call sequence (set by `__call__`)."""

    spatial_context: torch.Tensor | None = None  # (rows * F, T, D), rows = 2B under guidance
    spatial_bias: torch.Tensor | None = None  # (rows * F, 1, T)
    temporal_bias: torch.Tensor | None = None  # (rows, 1, T)

    def fill(self, context: torch.Tensor | None, bias: torch.Tensor | None) -> None:
        """Per-frame context (rows, F, T, D) and token bias (rows, F, T) for the next UNet calls;
        None empties the slot (the processors are then the stock ones)."""
        if context is None:
            self.spatial_context = self.spatial_bias = self.temporal_bias = None
            return
        self.spatial_context = context.flatten(0, 1)  # (R * F, T, D), frame-major within each row
        self.spatial_bias = None if bias is None else bias.flatten(0, 1)[:, None, :]
        self.temporal_bias = None if bias is None else bias[:, 0, None, :]


# CUDA caps a kernel grid's y and z dimensions at 65,535, and the flash and memory-efficient
# attention kernels put the batch there (pytorch/pytorch#146704, #142228). SVD's temporal attention
# batches every latent pixel of every row: 18,432 for one guided 576x1024 clip, 73,728 for a sweep
# batch of four, 131,072 for one guided 2048x2048 clip.
ATTENTION_MAX_BATCH = 65_535


def launch_limit(device: torch.device) -> int | None:
    """The largest attention batch one kernel launch takes on `device` (None: no limit)."""
    return ATTENTION_MAX_BATCH if device.type == "cuda" else None


def attend_in_launches(
    inner: AttnProcessor2_0,
    attn: Attention,
    hidden: torch.Tensor,
    context: torch.Tensor | None,
    mask: torch.Tensor | None,
    **kwargs: Any,
) -> torch.Tensor:
    """`inner(attn, ...)` on equal batch slices no larger than the device's launch limit. Attention
    never mixes batch rows and the context and mask have a row per batch row (as SVD's always do),
    so the slices are exact."""
    limit, batch = launch_limit(hidden.device), hidden.shape[0]
    if limit is None or batch <= limit:
        return inner(attn, hidden, context, mask, **kwargs)
    for name, tensor in (("context", context), ("mask", mask)):
        if tensor is not None and tensor.shape[0] != batch:
            raise RuntimeError(f"attention {name} has {tensor.shape[0]} rows for a batch of {batch}: cannot slice")
    slices = -(-batch // limit)

    def split(tensor: torch.Tensor | None) -> list[torch.Tensor | None]:
        return [None] * slices if tensor is None else list(torch.tensor_split(tensor, slices))

    parts = zip(split(hidden), split(context), split(mask), strict=True)
    return torch.cat([inner(attn, h, c, m, **kwargs) for h, c, m in parts])


def has_single_key(
    attn: Attention, hidden: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
) -> bool:
    """Whether this is cross-attention over one token with nothing that needs the queries (a mask, a
    spatial or group norm, 4-D input): SVD's cross-attention whenever a job has no reference tokens."""
    return (
        context is not None
        and context.shape[1] == 1
        and mask is None
        and hidden.ndim == 3
        and attn.spatial_norm is None
        and attn.group_norm is None
    )


def attend_single_key(attn: Attention, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Attention over a single key: every query's softmax weight is exactly 1, so every query's
    output is the projected value. Skips the query and key projections and the attention kernel
    (~4% of a full-size SVD-XT UNet call) and computes the output projection once per row instead
    of once per query; diffusers' `AttnProcessor2_0` gives the same result to rounding."""
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    out = attn.to_out[1](attn.to_out[0](attn.to_v(context)))  # (B, 1, C)
    out = out.expand(-1, hidden.shape[1], -1)
    if attn.residual_connection:
        out = out + hidden
    return out if attn.rescale_output_factor == 1.0 else out / attn.rescale_output_factor


class LaunchSafeProcessor:
    """diffusers' `AttnProcessor2_0`, run in batch slices the device's attention kernels can launch.
    Subclasses adjust the context and mask first."""

    def __init__(self) -> None:
        self.inner = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        encoder_hidden_states, attention_mask = self.adjust(hidden_states, encoder_hidden_states, attention_mask)
        if has_single_key(attn, hidden_states, encoder_hidden_states, attention_mask):
            return attend_single_key(attn, hidden_states, encoder_hidden_states)
        return attend_in_launches(self.inner, attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)

    def adjust(
        self, hidden: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return context, mask


class _SlotProcessor(LaunchSafeProcessor):
    """A cross-attention processor that reads the slot and adjusts the context and mask. With an
    empty slot it is the stock processor."""

    def __init__(self, slot: Slot) -> None:
        super().__init__()
        self.slot = slot


class FrameContextProcessor(_SlotProcessor):
    """Cross-attention of the spatial transformer blocks with a per-frame context: the UNet hands
    every frame the same context (it `repeat_interleave`s one per clip); this swaps in the slot's
    per-frame context and reference-token bias."""

    def adjust(
        self, hidden: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        frames = self.slot.spatial_context
        if frames is None:
            return context, mask
        if context is None or context.shape[0] != frames.shape[0]:
            got = None if context is None else context.shape[0]
            raise RuntimeError(f"per-frame context has {frames.shape[0]} rows, the UNet passed {got}")
        bias = self.slot.spatial_bias
        return frames.to(hidden.dtype), mask if bias is None else bias.to(hidden.dtype)


class TemporalBiasProcessor(_SlotProcessor):
    """Cross-attention of the temporal blocks: the context is already the first frame's (as in
    diffusers' `TransformerSpatioTemporalModel`); only the reference-token bias is added."""

    def adjust(
        self, hidden: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        bias = self.slot.temporal_bias
        if bias is None or context is None:
            return context, mask
        # rows = clips x spatial positions; every position of a clip shares the clip's bias.
        per_clip = hidden.shape[0] // bias.shape[0]
        return context, bias.repeat_interleave(per_clip, dim=0).to(hidden.dtype)


def install_processors(unet: torch.nn.Module, slot: Slot) -> None:
    processors: dict[str, Any] = {}
    for name in unet.attn_processors:  # type: ignore[attr-defined]
        if not name.endswith("attn2.processor"):
            processors[name] = LaunchSafeProcessor()
        elif "temporal_transformer_blocks" in name:
            processors[name] = TemporalBiasProcessor(slot)
        else:
            processors[name] = FrameContextProcessor(slot)
    unet.set_attn_processor(processors)  # type: ignore[attr-defined, operator]


@dataclass
class EncodedImage:
    """One conditioning image encoded both ways: CLIP embedding (D,) and VAE latent (C, h, w)."""

    embedding: torch.Tensor
    latent: torch.Tensor


@dataclass
class Noise:
    """Per-clip random draws, in diffusers' order: augmentation noise first, then initial latents."""

    augmentation: torch.Tensor  # (1, 3, H, W)
    latents: torch.Tensor  # (1, F, C, h, w), unit variance
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class SteerableVideoPipeline(StableVideoDiffusionPipeline):
    """SVD with per-frame, weighted, batched conditioning. Load it like the stock pipeline."""

    def __init__(
        self,
        vae: AutoencoderKLTemporalDecoder,
        image_encoder: CLIPVisionModelWithProjection,
        unet: UNetSpatioTemporalConditionModel,
        scheduler: EulerDiscreteScheduler,
        feature_extractor: CLIPImageProcessor,
    ) -> None:
        super().__init__(vae, image_encoder, unet, scheduler, feature_extractor)
        self._slot = Slot()
        install_processors(self.unet, self._slot)

    # -- encoders (the stock pipeline's, one image at a time) --------------------------------------

    def draw_noise(self, generator: torch.Generator, num_frames: int, height: int, width: int) -> Noise:
        """Draw exactly what the stock pipeline draws from `generator`, in the same order."""
        device, dtype = self._execution_device, self.image_encoder.dtype
        augmentation = randn_tensor((1, 3, height, width), generator=generator, device=device, dtype=torch.float32)
        latent_shape = (
            1,
            num_frames,
            self.unet.config.in_channels // 2,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        latents = randn_tensor(latent_shape, generator=generator, device=device, dtype=dtype)
        return Noise(augmentation=augmentation, latents=latents)

    # The model's reference corpus of embeddings for geodesic keyframe paths (`workers.corpus`), set
    # at load from the model spec; None without one.
    geodesic_corpus: Any = None

    def corpus_embeddings(self) -> torch.Tensor | None:
        """The reference corpus's embeddings (N, D), encoded once per loaded model; None without one."""
        return None if self.geodesic_corpus is None else self.geodesic_corpus.embeddings(self)

    @property
    def embedding_cache(self) -> EmbeddingCache:
        """The CLIP embeddings of the job corpora this loaded model has encoded (`workers.corpus`)."""
        cache = self.__dict__.get("_embedding_cache")
        if cache is None:
            cache = self.__dict__["_embedding_cache"] = EmbeddingCache()
        return cache

    @torch.no_grad()
    def encode_image_embedding(self, image: PIL.Image.Image) -> torch.Tensor:
        """The CLIP image embedding (D,) the stock pipeline conditions on."""
        return self._encode_image(image, self._execution_device, 1, False)[0, 0]

    @torch.no_grad()
    def encode_image(
        self,
        image: PIL.Image.Image,
        height: int,
        width: int,
        augmentation: torch.Tensor,
        noise_aug_strength: float,
    ) -> EncodedImage:
        """CLIP embedding of the image and VAE latent of the noise-augmented image (unscaled)."""
        embedding = self.encode_image_embedding(image)
        latent = self.encode_image_latent(image, height, width, augmentation, noise_aug_strength)
        return EncodedImage(embedding=embedding, latent=latent.to(embedding.dtype))

    @torch.no_grad()
    def encode_image_latent(
        self,
        image: PIL.Image.Image,
        height: int,
        width: int,
        augmentation: torch.Tensor,
        noise_aug_strength: float,
    ) -> torch.Tensor:
        """The VAE latent (C, h, w) of the noise-augmented image (unscaled), in the VAE's dtype."""
        device = self._execution_device
        pixels = self.video_processor.preprocess(image, height=height, width=width).to(device)
        pixels = pixels + noise_aug_strength * augmentation.to(pixels.dtype)
        needs_upcasting = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        if needs_upcasting:
            self.vae.to(dtype=torch.float32)
        try:
            latent = self._encode_vae_image(pixels, device, 1, False)[0]
        finally:
            # Even when the encode fails (out of memory, say): a VAE left in float32 would fail every
            # later job of this worker at decode.
            if needs_upcasting:
                self.vae.to(dtype=torch.float16)
        return latent

    @torch.no_grad()
    def time_ids(self, fps: int, motion_bucket_id: int, noise_aug_strength: float) -> torch.Tensor:
        """(3,) extra conditioning; SVD was trained on fps - 1, as diffusers notes."""
        ids = self._get_add_time_ids(
            fps - 1, motion_bucket_id, noise_aug_strength, self.image_encoder.dtype, 1, 1, False
        )
        return ids[0].to(self._execution_device)

    # -- generation -------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        conditioning: Conditioning,
        noise: torch.Tensor,
        num_inference_steps: int = 25,
        decode_chunk_size: int | None = None,
        callback_on_step_end: StepCallback | None = None,
        output_type: str = "np",
        *,
        latents: torch.Tensor | None = None,
        first_step: int = 0,
    ) -> np.ndarray | torch.Tensor:
        """Denoise B clips from unit-variance `noise` (B, F, C, h, w) and decode them.

        `latents`, when given, are the initial latents as they stand before step `first_step` (already
        at that step's sigma: x = x0 + σ·ε), in place of `noise` times the first sigma; denoising then
        runs steps `first_step` to the last (callbacks see the steps' own indices). Starting part-way
        through the schedule is how a real clip is edited (SDEdit).

        Returns frames (B, F, H, W, 3) float32 in [0, 1] for `output_type="np"`, or the final latents
        for `"latent"`.
        """
        cond = conditioning
        num_frames = noise.shape[1]
        device = self._execution_device
        do_cfg = cond.do_classifier_free_guidance
        self._guidance_scale = cond.guidance  # read by diffusers' properties and by callbacks

        # 1. Assemble the UNet inputs: [negative, positive] halves under guidance.
        image_latents, context, bias = self.assemble(cond, do_cfg)

        # 2. Timesteps and initial latents (the scheduler's first sigma times unit noise). The latents
        #    stay in float32 between steps whatever the model's dtype (the UNet gets them cast): a
        #    latent direction or a style blend adds per step a shift far below half precision's
        #    rounding step at sigmas in the hundreds, which half-precision latents would round away.
        #    In float32 (the CPU) this is diffusers' loop exactly.
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        if not 0 <= first_step < len(timesteps):
            raise ValueError(f"`first_step` must be between 0 and {len(timesteps) - 1}, got {first_step}")
        if latents is None:
            if first_step:
                raise ValueError("starting at a later step needs the `latents` at that step")
            latents = noise.to(device=device, dtype=torch.float32) * self.scheduler.init_noise_sigma
        else:
            latents = latents.to(device=device, dtype=torch.float32)
        if first_step:
            # Otherwise the scheduler takes its step index from a search of the schedule for the first
            # timestep it is given, which is only right from the start.
            self.scheduler.set_begin_index(first_step)

        # 3. Per-frame guidance scale, broadcast over (C, h, w).
        guidance = cond.guidance.to(device=device, dtype=torch.float32)[:, :, None, None, None]

        # 4. Denoising loop, with per-frame context held in the processors' slot.
        self._num_timesteps = len(timesteps)
        self._fill_slot(context, bias, num_frames)
        both_ways = None if cond.reverse is None else _BothWays(self, cond, noise.shape, do_cfg)
        try:
            for i, t in enumerate(timesteps):
                if i < first_step:
                    continue
                if both_ways is not None:
                    # A bidirectional step: two passes (`_BothWays`) in place of the stock step below.
                    latents, denoised = both_ways.step(i, t, latents, guidance)
                    if callback_on_step_end is not None:
                        tensors = {"latents": latents, "denoised": denoised}
                        latents = callback_on_step_end(self, i, t, tensors).pop("latents", latents)
                    continue
                scaled = self.scheduler.scale_model_input(latents, t)
                noise_pred = self.guided_prediction(scaled, t, image_latents, context, guidance, do_cfg)
                stepped = self.scheduler.step(noise_pred, t, latents)
                latents = stepped.prev_sample
                if callback_on_step_end is not None:
                    # `denoised`: the step's estimate of the clean latents (read by live previews).
                    tensors = {"latents": latents, "denoised": stepped.pred_original_sample}
                    latents = callback_on_step_end(self, i, t, tensors).pop("latents", latents)
        finally:
            self._fill_slot(None, None, num_frames)

        if output_type == "latent":
            return latents

        # 5. Decode each clip on its own, so decode chunks never straddle two clips.
        return self.decode(latents, decode_chunk_size)

    def guided_prediction(
        self,
        scaled: torch.Tensor,
        t: torch.Tensor,
        image_latents: torch.Tensor,
        context: torch.Tensor,
        guidance: torch.Tensor,
        do_cfg: bool,
    ) -> torch.Tensor:
        """The denoising loop's guided UNet output (B, F, C, h, w) in float32, as one call: `scaled` are
        the latents scaled to the UNet's input (`scale_model_input`), the rest assembled by `assemble`,
        with `context` in the processors' slot (`_fill_slot`)."""
        model_input = torch.cat([scaled] * 2) if do_cfg else scaled
        model_input = torch.cat([model_input.to(context.dtype), image_latents], dim=2)
        noise_pred = self.unet(
            model_input,
            t,
            # The first frame's tokens: what the temporal blocks attend to, as in diffusers.
            encoder_hidden_states=context[:, 0],
            added_time_ids=self._time_ids,
            return_dict=False,
        )[0].float()
        if do_cfg:
            noise_uncond, noise_cond = noise_pred.chunk(2)
            noise_pred = noise_uncond + guidance * (noise_cond - noise_uncond)
        return noise_pred

    def assemble(self, cond: Conditioning, do_cfg: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Stack the halves: image latents (R, F, C, h, w), context (R, F, T, D), bias (R, F, T)."""
        device = self._execution_device
        if do_cfg:
            image_latents = torch.cat([cond.negative_image_latents, cond.image_latents])
            context = torch.cat([cond.negative_tokens, cond.tokens])
            time_ids = torch.cat([cond.added_time_ids, cond.added_time_ids])
            bias = None
            if cond.token_bias is not None:
                # The negative half sees its own first token only: references steer the positive half.
                negative_bias = torch.full_like(cond.token_bias, float("-inf"))
                negative_bias[..., 0] = 0.0
                bias = torch.cat([negative_bias, cond.token_bias])
        else:
            image_latents, context, time_ids, bias = (
                cond.image_latents,
                cond.tokens,
                cond.added_time_ids,
                cond.token_bias,
            )
        self._time_ids = time_ids.to(device)
        return image_latents.to(device), context.to(device), None if bias is None else bias.to(device)

    def _fill_slot(self, context: torch.Tensor | None, bias: torch.Tensor | None, num_frames: int) -> None:
        self._slot.fill(context, bias)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, decode_chunk_size: int | None) -> np.ndarray:
        num_frames = latents.shape[1]
        height, width = (n * self.vae_scale_factor for n in latents.shape[-2:])
        chunk = decode_chunk_size or self.decode_chunk_for(num_frames, height, width)
        # Decoding runs in the VAE's own dtype, as in the stock pipeline (it upcasts for encoding only).
        latents = latents.to(self.vae.dtype)  # kept in float32 while denoising
        # Each clip's frames go straight into the result: the host holds the job's frames once, not
        # once per clip and again joined (a 16-clip sweep's are 2.8 GB in float32 at 576x1024).
        frames = np.empty((len(latents), num_frames, height, width, 3), np.float32)
        for index, clip in enumerate(latents.split(1)):
            decoded = self.decode_latents(clip, num_frames, chunk)
            frames[index] = self.video_processor.postprocess_video(video=decoded, output_type="np")[0]
            del decoded
        return frames

    # -- GPU fast path (no effect on the CPU) ---------------------------------------------------------

    # Elements one decoded frame holds at its peak, per pixel: the temporal decoder's widest
    # full-resolution block has 256 channels (up_blocks[2] after upsampling) and, with the live
    # activations around it, peaks at ≈ 1024 elements per pixel (traced at full size by
    # `bench.gpu_memory`: 1024.2): 576x1024 is ≈ 1.1 GiB per frame in float16, 2.25 GiB in float32.
    DECODE_ELEMENTS_PER_PIXEL = 128 * 8
    # Elements one UNet call holds at its peak, per latent pixel, frame and batch row (a guided clip
    # is two rows): traced by `bench.gpu_memory` at 9,009 (stock processors) to 9,092 (a steered
    # job's per-frame context) at 576x1024 x 25 frames, 9,804 at a 64x128 thumbnail; planned with
    # ~13% to spare: 8.8 GiB per guided clip at that size in float16 (7.8 GiB traced).
    UNET_ELEMENTS_PER_LATENT_PIXEL = 10 * 1024
    DECODE_MEMORY_FRACTION = 0.8

    def decode_chunk_for(self, num_frames: int, height: int, width: int) -> int:
        """Frames decoded at once when `decode_chunk_size` is unset: all of them on the CPU (as diffusers
        does); on CUDA as many as fit in 80% of the free memory (the VAE decode is the memory spike)."""
        return self._fits(num_frames, self.decode_bytes_per_frame(height, width))

    def denoise_batch_for(self, limit: int, num_frames: int, height: int, width: int) -> int:
        """Clips per UNet batch for a sweep, at most `limit`: all of them on the CPU; on CUDA as many
        guided clips as fit in 80% of the free memory."""
        return self._fits(limit, self.denoise_bytes(num_frames, height, width))

    def decode_bytes_per_frame(self, height: int, width: int) -> int:
        """Planned peak activation bytes of decoding one frame of `height` x `width` in the VAE's dtype."""
        return height * width * self.DECODE_ELEMENTS_PER_PIXEL * self.vae.dtype.itemsize

    def denoise_bytes(self, num_frames: int, height: int, width: int) -> int:
        """Planned peak activation bytes of one guided clip of frames `height` x `width` in the UNet's dtype."""
        latent_pixels = (height // self.vae_scale_factor) * (width // self.vae_scale_factor)
        return self.denoise_bytes_per_clip(num_frames, latent_pixels, self.unet.dtype.itemsize)

    @classmethod
    def denoise_bytes_per_clip(cls, num_frames: int, latent_pixels: int, itemsize: int) -> int:
        """Planned peak activation bytes of one guided clip (two UNet rows) in a denoising batch."""
        return 2 * num_frames * latent_pixels * cls.UNET_ELEMENTS_PER_LATENT_PIXEL * itemsize

    def _fits(self, count: int, each: int) -> int:
        """How many of `count` items of `each` bytes fit in 80% of the device's free memory (at least
        one; all of them off CUDA), counting blocks the allocator caches but does not use as free."""
        device = self._execution_device
        if device.type != "cuda":
            return count
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return fits_in(free, each, count, self.DECODE_MEMORY_FRACTION)

    @torch.no_grad()
    def warm_up(self, num_frames: int, height: int, width: int, steps: int = 2) -> None:
        """Run the denoiser (guidance on) and the decoder once at one shape, so that compilation,
        kernel selection and allocator growth happen at worker start, not in the first job.

        Uses zeros and a local generator: the process's random state is untouched.
        """
        device, dtype = self._execution_device, self.unet.dtype
        dim = int(self.unet.config.cross_attention_dim)
        channels = self.unet.config.in_channels // 2
        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor
        zeros = torch.zeros((1, num_frames, 1, dim), device=device, dtype=dtype)
        latents = torch.zeros((1, num_frames, channels, h, w), device=device, dtype=dtype)
        conditioning = Conditioning(
            tokens=zeros,
            negative_tokens=zeros,
            token_bias=None,
            image_latents=latents,
            negative_image_latents=latents,
            added_time_ids=torch.tensor([[6.0, 127.0, 0.02]], device=device, dtype=dtype),
            guidance=torch.linspace(1.0, 3.0, num_frames, device=device)[None],
        )
        noise = torch.randn(latents.shape, generator=torch.Generator(device).manual_seed(0), device=device)
        self(conditioning, noise.to(dtype), steps, output_type="np")
        if device.type == "cuda":
            torch.cuda.synchronize(device)


class _BothWays:
    """The bidirectional step of a `Conditioning` with a `TimeReversal` (see there): two guided UNet
    calls per step where the stock loop makes one, and Euler steps taken here (`steering.sampling`)
    because the scheduler's `step` counts one step per call."""

    def __init__(self, pipe: SteerableVideoPipeline, cond: Conditioning, shape: torch.Size, do_cfg: bool) -> None:
        reverse = cond.reverse
        if reverse is None:
            raise ValueError("a bidirectional step needs the conditioning's `reverse` pass")
        self.pipe, self.do_cfg, self.num_frames = pipe, do_cfg, shape[1]
        device = pipe._execution_device
        # The flipped pass first, so `_time_ids` end as the forward pass's (the two are built alike).
        self.backward = pipe.assemble(reverse.conditioning, do_cfg)
        self.forward = pipe.assemble(cond, do_cfg)
        self.ends = reverse.ends.to(device=device, dtype=torch.float32)
        self.prediction_type = str(pipe.scheduler.config.prediction_type)
        height, width = (n * pipe.vae_scale_factor for n in shape[-2:])
        self.generator = torch.Generator(device).manual_seed(reverse.seed)
        pipe.draw_noise(self.generator, self.num_frames, height, width)  # past the job's own draws
        self.noise_shape = (1, *shape[1:])

    def step(
        self, i: int, t: torch.Tensor, latents: torch.Tensor, guidance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents at step i's sigma to the next sigma; returns them and the last pass's estimate x̂₀."""
        sigmas = self.pipe.scheduler.sigmas
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        # 1. Forward, conditioned on the first keyframe, the end frames held.
        ahead = euler_step(latents, self._denoised(latents, t, sigma, guidance, self.forward), sigma, sigma_next)
        # 2. Back to this step's sigma with the job seed's noise.
        noise = randn_tensor(self.noise_shape, generator=self.generator, device=latents.device, dtype=torch.float32)
        back = renoise(ahead, sigma_next, sigma, noise)
        # 3. Flipped in time, conditioned on the last keyframe, the end frames held. Euler acts frame
        #    by frame, so stepping with the estimate flipped back is the flipped step flipped back.
        flipped = flip_frames(back)
        denoised = flip_frames(self._denoised(flipped, t, sigma, guidance, self.backward, flipped=True))
        return euler_step(back, denoised, sigma, sigma_next), denoised

    def _denoised(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        sigma: torch.Tensor,
        guidance: torch.Tensor,
        inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
        flipped: bool = False,
    ) -> torch.Tensor:
        """x̂₀ of one pass with its end frames held to the keyframes' (in the pass's own frame order).
        Guidance keeps its per-frame ramp in both passes: each pass's conditioning frame is its first."""
        image_latents, context, bias = inputs
        self.pipe._fill_slot(context, bias, self.num_frames)
        output = self.pipe.guided_prediction(
            scale_input(latents, sigma), t, image_latents, context, guidance, self.do_cfg
        )
        ends = self.ends.flip(1) if flipped else self.ends
        return hold_ends(denoised_estimate(output, latents, sigma, self.prediction_type), ends)


def fits_in(free_bytes: int, each_bytes: int, count: int, fraction: float) -> int:
    """How many of `count` items of `each_bytes` fit in `fraction` of `free_bytes`: at least one (a job
    too large for the card fails with the device's out-of-memory error), at most `count`."""
    return max(1, min(count, int(free_bytes * fraction) // max(1, each_bytes)))
