"""Tensor memory of the full-size SVD-XT at 576x1024 in half precision, traced without a GPU.

The components are built and run under `FakeTensorMode`: every operator computes shapes only, so a
25-frame guided UNet call costs seconds on any CPU and needs no memory. `MemTracker` follows every
tensor the operators create and free, and reports the peak of what is alive. Measured:

- weights (UNet, VAE, CLIP ViT-H/14) in the chosen dtype;
- one guided UNet call (two branches, 25 frames): the stock attention processors, as bare diffusers
  runs it, and vsteer's, holding a steered job's per-frame context (keyframes) and reference-token
  bias, as its denoising loop holds them, and with one token (a job without references);
- the temporal VAE decode for several chunk sizes: the peak per decoded frame, in elements per pixel,
  against the constant `SteerableVideoPipeline.decode_chunk_for` assumes;
- from those: the peak of a clip on 24, 80 and 141 GB cards with the engine's decode chunk, and of
  bare diffusers, which decodes all frames at once unless told otherwise; and how many clips of a
  sweep the engine batches through the UNet there (`denoise_batch_for`, up to the 16 a sweep allows).

What it does not see: the CUDA context (~0.5 GiB), cuDNN and cuBLAS workspaces, kernels' scratch
memory and the caching allocator's rounding and fragmentation. It is a floor for what a card must hold
and a check of the engine's own additions; `bench.gpu_svd` measures the real peak on a GPU.

    python -m bench.gpu_memory                  # full size, float16
    python -m bench.gpu_memory --size small     # the shrunk architecture (seconds; the smoke test)
"""

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import table, write_result
from bench.gpu_svd import SIZES, Size, call_unet, guided_inputs, parameter_bytes

GIB = 2**30
# Cards by the memory CUDA reports for them (GiB): a 24 GB A10 or L4 shows ~22.5, an H100 80 GB
# ~79.2, an H200 141 GB ~139.8 (the smallest of each class, so a plan that fits here fits there).
CARDS = {"24 GB (A10, L4)": 22.49, "H100 80 GB": 79.18, "H200 141 GB": 139.8}
CUDA_CONTEXT_GIB = 0.5  # what the driver and kernels take before the first tensor; not traced


def fake_modules(size: Size, dtype: torch.dtype) -> dict[str, Any]:
    """The size's random-weight models; call under `FakeTensorMode` (built in `dtype` directly:
    converting fake parameters with `.to` is not supported)."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        modules = {
            "unet": UNetSpatioTemporalConditionModel(**size.unet),
            "vae": AutoencoderKLTemporalDecoder(**size.vae),
            "image_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(**size.clip)),
        }
    finally:
        torch.set_default_dtype(saved)
    for module in modules.values():
        module.eval()
    return modules


def peak_bytes(run: Callable[[], Any], *modules: torch.nn.Module) -> int:
    """Peak bytes of the tensors `run` creates (the modules' weights, tracked, are left out)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    for module in modules:
        tracker.track_external(module)
    with tracker, torch.no_grad():
        run()
    weights = ("PARAM", "BUFFER")
    return max(
        int(by_kind["Total"] - sum(v for k, v in by_kind.items() if getattr(k, "name", None) in weights))
        for by_kind in tracker.get_tracker_snapshot("peak").values()
    )


def unet_call(pipe: Any, size: Size, steered: bool) -> Callable[[], Any]:
    """One guided UNet call as the denoising loop makes it: one CLIP token, or with `steered` the
    keyframe blend and two reference tokens in vsteer's per-frame slot (`bench.gpu_svd.call_unet`)."""
    return lambda: call_unet(pipe, guided_inputs(pipe.unet, size, 3 if steered else 1))


def decode_call(vae: torch.nn.Module, size: Size, chunk: int, scale: int) -> Callable[[], Any]:
    def run() -> Any:
        latents = torch.zeros(chunk, vae.config.latent_channels, size.height // scale, size.width // scale)
        return vae.decode(latents.to(vae.dtype), num_frames=chunk).sample

    return run


def measure(size: Size, dtype: torch.dtype, chunks: list[int]) -> dict[str, Any]:
    from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers import CLIPImageProcessor

    from workers.pipeline import SteerableVideoPipeline
    from workers.tiny import SVD_SCHEDULER

    # The scheduler and image processor hold real tensors: made outside the fake mode.
    components: dict[str, Any] = {
        "scheduler": EulerDiscreteScheduler(**SVD_SCHEDULER),
        "feature_extractor": CLIPImageProcessor(crop_size=224, size=224),
    }
    with FakeTensorMode():
        components.update(fake_modules(size, dtype))
        bare = StableVideoDiffusionPipeline(**components)
        weights = {name: parameter_bytes(components[name]) for name in ("unet", "vae", "image_encoder")}
        unet_bare = peak_bytes(unet_call(bare, size, steered=False), bare.unet)
        # The same modules with vsteer's processors installed (the constructor swaps them in).
        engine = SteerableVideoPipeline(**components)
        unet_vsteer = peak_bytes(unet_call(engine, size, steered=True), engine.unet)
        unet_vsteer_plain = peak_bytes(unet_call(engine, size, steered=False), engine.unet)
        scale = engine.vae_scale_factor
        decode = {chunk: peak_bytes(decode_call(engine.vae, size, chunk, scale), engine.vae) for chunk in chunks}
    per_frame = max(peak / chunk for chunk, peak in decode.items())
    rows_frames_pixels_bytes = 2 * size.num_frames * (size.height // scale) * (size.width // scale) * dtype.itemsize
    return {
        "weights": weights,
        "unet_bare": unet_bare,
        "unet_vsteer": unet_vsteer,
        "unet_vsteer_plain": unet_vsteer_plain,
        "decode": decode,
        "decode_per_frame": per_frame,
        "unet_elements_per_latent_pixel": {
            "bare": unet_bare / rows_frames_pixels_bytes,
            "vsteer": unet_vsteer / rows_frames_pixels_bytes,
        },
        "decode_elements_per_pixel": per_frame / (size.height * size.width * dtype.itemsize),
    }


def card_plan(size: Size, dtype: torch.dtype, measured: dict[str, Any], card: str) -> dict[str, Any]:
    """The engine's decode chunk and sweep batch on `card` (as `decode_chunk_for` and
    `denoise_batch_for` pick them, weights resident) and the clip's traced peak, next to bare
    diffusers' all-frames decode."""
    from workers.pipeline import SteerableVideoPipeline as Pipe
    from workers.pipeline import fits_in

    weights = sum(measured["weights"].values())
    card_bytes = CARDS[card] * GIB
    free = int(card_bytes - CUDA_CONTEXT_GIB * GIB - weights)
    assumed = size.height * size.width * Pipe.DECODE_ELEMENTS_PER_PIXEL * dtype.itemsize
    chunk = fits_in(free, assumed, size.num_frames, Pipe.DECODE_MEMORY_FRACTION)
    latent_pixels = (size.height // 8) * (size.width // 8)
    per_clip = Pipe.denoise_bytes_per_clip(size.num_frames, latent_pixels, dtype.itemsize)
    batch = fits_in(free, per_clip, 16, Pipe.DECODE_MEMORY_FRACTION)  # a sweep has at most 16 clips
    per_frame = measured["decode_per_frame"]
    overhead = weights + CUDA_CONTEXT_GIB * GIB

    def peak(unet: int, frames: int) -> float:
        return (overhead + max(unet, per_frame * frames)) / GIB

    vsteer, bare = peak(measured["unet_vsteer"], chunk), peak(measured["unet_bare"], size.num_frames)
    return {
        "card": card,
        "card_gib": CARDS[card],
        "vsteer_decode_chunk": chunk,
        "vsteer_sweep_clips_per_batch": batch,
        "vsteer_peak_gib": vsteer,
        "vsteer_fits": vsteer * GIB <= card_bytes,
        "bare_peak_gib": bare,
        "bare_fits": bare * GIB <= card_bytes,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16")
    parser.add_argument("--chunks", default="1,2,4,8", help="VAE decode chunk sizes to trace")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/gpu_memory.json)")
    args = parser.parse_args(argv)

    from workers.models import quiet_libraries
    from workers.pipeline import SteerableVideoPipeline

    quiet_libraries()
    size, dtype = SIZES[args.size], getattr(torch, args.dtype)
    chunks = sorted({min(int(c), size.num_frames) for c in args.chunks.split(",")})
    measured = measure(size, dtype, chunks)

    figures = {
        "traced": "tensor memory under FakeTensorMode (no CUDA context, workspaces or allocator rounding)",
        "size": {"name": size.name, "num_frames": size.num_frames, "height": size.height, "width": size.width},
        "dtype": args.dtype,
        "weights_gib": {name: value / GIB for name, value in measured["weights"].items()},
        "unet_call_activation_gib": {
            "bare": measured["unet_bare"] / GIB,
            "vsteer": measured["unet_vsteer"] / GIB,
            "vsteer_one_token": measured["unet_vsteer_plain"] / GIB,
        },
        "vsteer_vs_bare_unet_activation": measured["unet_vsteer"] / measured["unet_bare"],
        "decode_activation_gib": {str(chunk): value / GIB for chunk, value in measured["decode"].items()},
        "decode_gib_per_frame": measured["decode_per_frame"] / GIB,
        "decode_elements_per_pixel": measured["decode_elements_per_pixel"],
        "decode_elements_per_pixel_assumed": SteerableVideoPipeline.DECODE_ELEMENTS_PER_PIXEL,
        "unet_elements_per_latent_pixel": measured["unet_elements_per_latent_pixel"],
        "unet_elements_per_latent_pixel_assumed": SteerableVideoPipeline.UNET_ELEMENTS_PER_LATENT_PIXEL,
        "cards": [card_plan(size, dtype, measured, card) for card in CARDS],
    }
    rows = [
        ["weights (UNet + VAE + CLIP)", sum(figures["weights_gib"].values()), ""],
        ["UNet call, guided: bare processors", figures["unet_call_activation_gib"]["bare"], ""],
        ["UNet call, guided: vsteer processors, steered", figures["unet_call_activation_gib"]["vsteer"], ""],
        [
            "UNet call, guided: vsteer processors, one token",
            figures["unet_call_activation_gib"]["vsteer_one_token"],
            "",
        ],
        ["VAE decode, per frame", figures["decode_gib_per_frame"], f"{figures['decode_elements_per_pixel']:.0f} el/px"],
    ]
    rows += [
        [
            f"clip peak, {card['card']} ({card['card_gib']} GiB)",
            card["vsteer_peak_gib"],
            f"vsteer (chunk {card['vsteer_decode_chunk']}, sweep batch {card['vsteer_sweep_clips_per_batch']}); "
            f"bare {card['bare_peak_gib']:.1f} GiB, fits: {card['vsteer_fits']}/{card['bare_fits']}",
        ]
        for card in figures["cards"]
    ]
    title = f"SVD-XT tensor memory, traced ({size.name}: {size.num_frames}x{size.height}x{size.width}, {args.dtype})"
    print(table(title, ["what", "GiB", "note"], rows))
    unet = figures["unet_elements_per_latent_pixel"]
    print(
        f"\ndecode: {figures['decode_elements_per_pixel']:.1f} elements per pixel per frame traced, "
        f"{figures['decode_elements_per_pixel_assumed']} assumed by decode_chunk_for\n"
        f"UNet: {unet['bare']:.0f} (bare) / {unet['vsteer']:.0f} (vsteer) elements per latent pixel, frame and row "
        f"traced, {figures['unet_elements_per_latent_pixel_assumed']} assumed by denoise_batch_for"
    )
    print(f"wrote {write_result('gpu_memory', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
