"""(f) The full-size SVD-XT architecture with random weights: bare diffusers vs vsteer's engine.

Random weights cost exactly what real ones cost. Components (`--size full`, the default on CUDA):
`UNetSpatioTemporalConditionModel()` (its default config is SVD-XT's: 1.5 B parameters, 25 frames),
the temporal VAE with SVD's published config (`AutoencoderKLTemporalDecoder`'s own default is a
one-block toy), CLIP ViT-H/14 image encoder (hidden 1280, 32 layers, 16 heads, projection 1024), SVD's
Euler v-prediction scheduler. 25 frames at 576x1024, 25 steps, guidance 1 → 3 (two UNet branches).

Variants, interleaved:

- `bare`: a stock `StableVideoDiffusionPipeline` in float16, nothing changed: its `__call__` with
  `output_type="latent"`, then its own `decode_latents` + `postprocess_video` (what `__call__` does
  with `output_type="np"`, split so the VAE decode share can be timed);
- `vsteer`: the engine as a worker runs it: separate copies of the same weights, `FastPath` for the
  device applied (channels_last, decode chunk from free memory; cuDNN autotune with `--autotune`;
  `torch.compile` with `--compile` or VSTEER_COMPILE=1), `plan_job_clips` → `SteerableVideoPipeline` → `decode`.

Reported: seconds per clip (medians) and the ratio, UNet TFLOP/s (FLOPs of one UNet call counted by
`torch.utils.flop_counter`, times steps, over the denoise time) and its fraction of the bf16 matmul
peak measured in the same run, peak memory over the weights, VAE decode share, and the max abs frame
difference of each variant against a float32 reference of the same weights and inputs.

On a machine without CUDA it runs `--size small` (a shrunk config of the same architecture, float32)
and says so: those are not GPU figures.

Care taken on CUDA: every weight is moved to the device explicitly (diffusers' `AlphaBlender` makes
its mix factor with the legacy `torch.Tensor(...)`, which ignores `with torch.device`); cuDNN's
autotune (global) is on only while the engine runs, so the bare baseline stays stock; the float32
reference runs with TF32 off (otherwise its convolutions keep a 10-bit mantissa, no better than fp16),
and is recorded as missing with its reason if it runs out of memory; peak memory is measured in one
untimed run per variant after the timed rounds, each from an emptied allocator cache (so neither is
charged for blocks the other left cached), as allocated by tensors and as reserved by the allocator
(what a card must hold); `--decode-chunk` fixes both variants' decode chunk (a 24 GB card cannot
decode 25 frames at once; `--decode-chunk 12` is what the engine picks there). Each stage prints a
line with the seconds since start as it ends, so a run stopped by a time limit shows how far it got.

    python -m bench.gpu_svd                        # full size on CUDA, small on CPU
    python -m bench.gpu_svd --size small --repeats 1
    python -m bench.gpu_svd --decode-chunk 12 --no-reference  # the 24 GB question
"""

import argparse
import contextlib
import copy
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import interleave, median, table, test_image, write_result

# SVD's published temporal VAE (stabilityai/stable-video-diffusion-img2vid-xt, vae/config.json).
SVD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "force_upcast": True,
}
CLIP_VIT_H = {
    "hidden_size": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "intermediate_size": 5120,
    "projection_dim": 1024,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "gelu",
}


@dataclass(frozen=True)
class Size:
    name: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    clip: dict[str, Any]
    num_frames: int
    height: int
    width: int
    steps: int


SIZES = {
    "full": Size("full", {}, SVD_VAE, CLIP_VIT_H, num_frames=25, height=576, width=1024, steps=25),
    # The full architecture at a thumbnail: checks on any machine that the full-size build and both
    # paths run end to end (about a minute and ~15 GB on a 2-core CPU with --no-reference).
    "full-thumb": Size("full-thumb", {}, SVD_VAE, CLIP_VIT_H, num_frames=3, height=64, width=128, steps=2),
    # The same block structure, narrower and shallower: runs in seconds on a 2-core CPU.
    "small": Size(
        "small",
        {
            "block_out_channels": (32, 64, 64, 64),
            "layers_per_block": 1,
            "num_attention_heads": (2, 4, 4, 4),
            "cross_attention_dim": 64,
            "addition_time_embed_dim": 32,
            "projection_class_embeddings_input_dim": 96,
            "num_frames": 8,
        },
        {**SVD_VAE, "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1, "sample_size": 128},
        {
            **CLIP_VIT_H,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "projection_dim": 64,
            "patch_size": 32,
        },
        num_frames=8,
        height=128,
        width=128,
        steps=6,
    ),
}


def build_components(size: Size, device: str, dtype: torch.dtype, seed: int = 0) -> dict[str, Any]:
    """Random-weight SVD components built directly on `device` (fast on a GPU) in `dtype`."""
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from workers.tiny import SVD_SCHEDULER

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**size.unet)
        vae = AutoencoderKLTemporalDecoder(**size.vae)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**size.clip))
    modules = {"unet": unet, "vae": vae, "image_encoder": image_encoder}
    for name, module in modules.items():
        module.to(device=device, dtype=dtype).eval()
        stray = {p.device.type for p in module.parameters()} - {torch.device(device).type}
        if stray:
            raise RuntimeError(f"{name}: weights left on {stray} after moving it to {device}")
    return {
        **modules,
        "scheduler": EulerDiscreteScheduler(**SVD_SCHEDULER),
        "feature_extractor": CLIPImageProcessor(crop_size=224, size=224),
    }


def save_model(size: Size, folder: Path, device: str) -> Path:
    """The size's random-weight pipeline in float16, written with `save_pretrained` so that a benchmark
    can load it the way a worker loads real weights (`ModelSpec` → `from_pretrained`)."""
    from diffusers import StableVideoDiffusionPipeline

    if not (folder / "model_index.json").is_file():
        components = build_components(size, device, torch.float16)
        StableVideoDiffusionPipeline(**components).save_pretrained(folder)
        del components
        gc.collect()
    return folder


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Float32 matmuls and convolutions in full precision (no TF32) while the block runs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_tflops(device: str, seconds: float = 2.0) -> tuple[float, str]:
    """Best TFLOP/s of large square matrix products: bf16 8192² on CUDA, float32 1024² on the CPU."""
    n, dtype = (8192, torch.bfloat16) if device.startswith("cuda") else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - start) / 1e12)
    return best, f"{str(dtype).removeprefix('torch.')} {n}x{n}"


def guided_inputs(
    unet: torch.nn.Module, size: Size, tokens: int, device: Any = None, fill: Callable[..., torch.Tensor] = torch.zeros
) -> dict[str, torch.Tensor]:
    """A guided call's inputs (two rows: negative and positive); `tokens` > 1 adds a token bias."""
    rows, frames, dim = 2, size.num_frames, unet.config.cross_attention_dim  # type: ignore[attr-defined]
    h, w = size.height // 8, size.width // 8
    dtype = unet.dtype  # type: ignore[attr-defined]
    inputs = {
        "sample": fill(rows, frames, unet.config.in_channels, h, w, device=device, dtype=dtype),  # type: ignore[attr-defined]
        "context": fill(rows, frames, tokens, dim, device=device, dtype=dtype),
        "time_ids": torch.tensor([[6.0, 127.0, 0.02]] * rows, device=device, dtype=dtype),
    }
    if tokens > 1:
        inputs["bias"] = torch.zeros(rows, frames, tokens, device=device, dtype=dtype)
    return inputs


def call_unet(pipe: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The UNet call as the engine's denoising loop makes it: with a token bias, the per-frame context
    and bias sit in the processors' slot (`SteerableVideoPipeline._fill_slot`) for the call."""
    context, frames = inputs["context"], inputs["context"].shape[1]
    steered = "bias" in inputs
    if steered:
        pipe._fill_slot(context, inputs["bias"], frames)
    try:
        with torch.no_grad():
            return pipe.unet(
                inputs["sample"],
                1.0,
                encoder_hidden_states=context[:, 0],
                added_time_ids=inputs["time_ids"],
                return_dict=False,
            )[0]
    finally:
        if steered:
            pipe._fill_slot(None, None, frames)


def counted_flops(run: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return float(counter.get_total_flops())


class Bare:
    """The stock pipeline, split into denoise and decode exactly as its `__call__` runs them."""

    def __init__(self, components: dict[str, Any], size: Size, image: Any, decode_chunk: int | None = None) -> None:
        from diffusers import StableVideoDiffusionPipeline

        self.pipe = StableVideoDiffusionPipeline(**components)
        self.pipe.set_progress_bar_config(disable=True)
        self.size, self.image = size, image
        # diffusers decodes every frame at once unless told otherwise
        self.decode_chunk = decode_chunk or size.num_frames

    def __call__(self) -> tuple[np.ndarray, dict[str, float]]:
        s, pipe, device = self.size, self.pipe, str(self.pipe._execution_device)
        start = time.perf_counter()
        latents = pipe(
            self.image,
            height=s.height,
            width=s.width,
            num_frames=s.num_frames,
            num_inference_steps=s.steps,
            generator=torch.Generator(device).manual_seed(42),
            output_type="latent",
        ).frames
        sync(device)
        denoised = time.perf_counter()
        with torch.no_grad():
            frames = pipe.decode_latents(latents, s.num_frames, self.decode_chunk)
            frames = pipe.video_processor.postprocess_video(video=frames, output_type="np")
        sync(device)
        end = time.perf_counter()
        # The encode (CLIP + VAE of the image) is inside the first call; it is small beside the UNet.
        return np.asarray(frames[0]), {"denoise": denoised - start, "decode": end - denoised}


class Engine:
    """vsteer's engine on its own copy of the weights, with the device's fast path."""

    def __init__(
        self,
        components: dict[str, Any],
        size: Size,
        image: Any,
        compile_: bool,
        decode_chunk: int | None = None,
        autotune: bool = False,
    ) -> None:
        from api_schemas import JobRequest
        from workers.models import FastPath
        from workers.pipeline import SteerableVideoPipeline
        from workers.settings import EngineSettings

        self.pipe = SteerableVideoPipeline(**components)
        self.pipe.set_progress_bar_config(disable=True)
        device = str(self.pipe._execution_device)
        fast = FastPath.for_device(device, EngineSettings())
        self.fast = FastPath(
            fast.channels_last, compile_ or fast.compile, fast.warm_up or compile_, fast.autotune or autotune
        )
        start = time.perf_counter()
        self.fast.apply(self.pipe, size.num_frames, size.height, size.width)
        self.setup_s = time.perf_counter() - start
        self.size, self.image, self.decode_chunk = size, image, decode_chunk
        generation = {"num_frames": size.num_frames, "width": size.width, "height": size.height, "steps": size.steps}
        self.job = JobRequest.model_validate({"seed": 42, "image": "unused.png", "generation": generation})

    def __call__(self) -> tuple[np.ndarray, dict[str, float]]:
        from workers.plan import plan_job
        from workers.planning import plan_job_clips

        pipe, device = self.pipe, str(self.pipe._execution_device)
        start = time.perf_counter()
        plan = plan_job(self.job, pipe, name="bench", defaults={})
        planned = plan_job_clips(pipe, plan, {"image": self.image})
        conditioning, noise, _ = planned.stack(planned.clips)
        latents = pipe(conditioning, noise, self.size.steps, output_type="latent")
        sync(device)
        denoised = time.perf_counter()
        frames = pipe.decode(latents, self.decode_chunk)
        sync(device)
        end = time.perf_counter()
        return frames[0], {"denoise": denoised - start, "decode": end - denoised}


def peak_bytes(device: str, run: Any) -> tuple[int, int] | None:
    """The most memory `run()` held beyond what was allocated before it, from an emptied allocator
    cache: as allocated by tensors, and as reserved by the allocator (what a card must hold). Not for
    timed runs: the cache refills inside it."""
    if not device.startswith("cuda"):
        return None
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    run()
    return torch.cuda.max_memory_allocated() - before, torch.cuda.max_memory_reserved() - before


# A "24 GB" card (A10, L4) shows 22.49 GiB to CUDA, and the driver's context takes ~0.5 GiB of it.
CARD_24GB_USABLE_GIB = 22.49 - 0.5

_STARTED = time.perf_counter()


def log(message: str) -> None:
    """A progress line with the seconds since start, printed at once."""
    print(f"[{time.perf_counter() - _STARTED:7.1f} s] {message}", flush=True)


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def module_bytes(components: dict[str, Any]) -> int:
    return sum(parameter_bytes(components[k]) for k in ("unet", "vae", "image_encoder"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    # Read when the CUDA allocator starts (first use, below): fewer fragmentation failures for the
    # large decode buffers.
    from workers.settings import CUDA_ALLOC_CONF, CUDA_ALLOC_CONF_ENV

    os.environ.setdefault(CUDA_ALLOC_CONF_ENV, CUDA_ALLOC_CONF)  # as a worker runs
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full" if cuda else "small")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16", help="engine dtype on CUDA")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's UNet and VAE decoder")
    parser.add_argument("--autotune", action="store_true", help="cuDNN autotune in the engine (VSTEER_CUDNN_AUTOTUNE)")
    parser.add_argument("--no-reference", action="store_true", help="skip the float32 reference run")
    parser.add_argument("--decode-chunk", type=int, default=None, help="frames per VAE decode, both variants")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/gpu_svd.json)")
    args = parser.parse_args(argv)

    from workers.models import quiet_libraries

    quiet_libraries()
    device = "cuda" if cuda else "cpu"
    size = SIZES[args.size]
    # Half precision on the GPU (diffusers' documented way to run SVD); float32 on the CPU.
    bare_dtype = torch.float16 if cuda else torch.float32
    engine_dtype = getattr(torch, args.dtype) if cuda else torch.float32
    image = test_image(0, (size.width, size.height))

    log(f"{device}, {size.name}: {size.num_frames}x{size.height}x{size.width}, {size.steps} steps")
    # 1. the measured peak of the device's matrix units, for the UNet's fraction of it
    peak_tflops, peak_what = matmul_peak_tflops(device)
    log(f"matmul peak {peak_tflops:.1f} TFLOP/s ({peak_what})")

    # 2. a float32 reference of the same weights and inputs (the quality yardstick), then freed
    reference, reference_note = None, "skipped (--no-reference)" if args.no_reference else None
    if not args.no_reference:
        components: dict[str, Any] = {}
        try:
            with ieee_float32():
                components = build_components(size, device, torch.float32)
                reference, _ = Bare(components, size, image, args.decode_chunk)()
        except torch.OutOfMemoryError as exc:
            reference_note = f"float32 reference out of memory: {str(exc).splitlines()[0]}"
        finally:
            components.clear()  # the float32 weights go before the measured variants are built
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
        log(f"float32 reference: {reference_note or 'done'}")

    # 3. bare and engine, each on its own copy of the same random weights
    bare_components = build_components(size, device, bare_dtype)
    engine_components = {k: copy.deepcopy(v) for k, v in bare_components.items()}
    if engine_dtype != bare_dtype:
        for key in ("unet", "vae", "image_encoder"):
            engine_components[key].to(engine_dtype)
    bare = Bare(bare_components, size, image, args.decode_chunk)
    log("bare and vsteer built")
    engine = Engine(engine_components, size, image, args.compile, args.decode_chunk, args.autotune and cuda)
    log(f"vsteer's fast path set up in {engine.setup_s:.1f} s: {engine.fast}")
    autotune = engine.fast.autotune  # set globally by the fast path; on only while the engine runs
    # one guided call (two rows), as the denoising loop makes it
    flops = counted_flops(lambda: call_unet(bare.pipe, guided_inputs(bare.pipe.unet, size, 1, device)))
    weights = {"bare": module_bytes(bare_components), "vsteer": module_bytes(engine_components)}
    log(f"UNet call counted: {flops / 1e12:.1f} TFLOP")

    outputs: dict[str, np.ndarray] = {}

    def measured(name: str, variant: Any):  # type: ignore[no-untyped-def]
        def run() -> dict[str, float]:
            torch.backends.cudnn.benchmark = autotune and name == "vsteer"
            start = time.perf_counter()
            frames, parts = variant()
            outputs[name] = frames
            took = ", ".join(f"{part} {seconds:.2f}" for part, seconds in parts.items())
            log(f"{name}: {time.perf_counter() - start:.2f} s ({took})")
            return parts

        return run

    variants_run = {"bare": measured("bare", bare), "vsteer": measured("vsteer", engine)}
    result = interleave(variants_run, args.repeats)
    peaks = {name: peak_bytes(device, run) for name, run in variants_run.items()}
    log("peak memory measured" if cuda else "no peak memory off CUDA")

    # 4. figures
    variants: dict[str, Any] = {}
    for name in ("bare", "vsteer"):
        clip_s = result.median(name)
        denoise_s = result.median(f"{name}.denoise")
        unet_tflops = flops * size.steps / denoise_s / 1e12
        peak, reserved = peaks[name] or (None, None)
        finite = bool(np.isfinite(outputs[name]).all())
        variants[name] = {
            "seconds_per_clip": clip_s,
            "denoise_s": denoise_s,
            "decode_s": result.median(f"{name}.decode"),
            "vae_decode_share": median(
                [d / t for d, t in zip(result.series(f"{name}.decode"), result.series(name), strict=True)]
            ),
            "unet_tflops": unet_tflops,
            "unet_fraction_of_matmul_peak": unet_tflops / peak_tflops,
            "weights_gib": weights[name] / 2**30,
            "peak_activation_gib": None if peak is None else peak / 2**30,
            "peak_total_gib": None if peak is None else (peak + weights[name]) / 2**30,
            "peak_reserved_total_gib": None if reserved is None else (reserved + weights[name]) / 2**30,
            "finite": finite,
            # None where there is no reference, or where the frames hold NaN/inf (`finite` says which)
            "max_abs_diff_vs_fp32": None
            if reference is None or not finite
            else float(np.abs(outputs[name] - reference).max()),
        }
    figures = {
        "gpu_figures": cuda,
        "note": None if cuda else "CPU run at reduced size: NOT GPU figures; ratios only show the engine adds nothing",
        "size": {"name": size.name, "num_frames": size.num_frames, "height": size.height, "width": size.width,
                 "steps": size.steps, "guidance": [1.0, 3.0]},
        "device": device,
        "dtypes": {"bare": str(bare_dtype).removeprefix("torch."), "vsteer": str(engine_dtype).removeprefix("torch.")},
        "fast_path": {**engine.fast.__dict__, "setup_s": engine.setup_s},
        "decode_chunk": args.decode_chunk,
        "reference": reference_note or "float32, TF32 off",
        "matmul_peak_tflops": peak_tflops,
        "matmul_peak_of": peak_what,
        "unet_tflop_per_call": flops / 1e12,
        "variants": variants,
        "vsteer_vs_bare": result.ratio("vsteer", "bare"),
        "targets": {"vsteer_vs_bare": 0.6, "unet_fraction_of_matmul_peak": 0.4,
                    "peak_total_gib_24gb_card": CARD_24GB_USABLE_GIB},
        "runs": result.summary(),
    }  # fmt: skip
    rows = [
        [
            name,
            v["seconds_per_clip"],
            v["unet_tflops"],
            v["unet_fraction_of_matmul_peak"],
            "n/a" if v["peak_total_gib"] is None else round(v["peak_total_gib"], 2),
            "n/a" if v["peak_reserved_total_gib"] is None else round(v["peak_reserved_total_gib"], 2),
            v["vae_decode_share"],
            "n/a" if v["max_abs_diff_vs_fp32"] is None else v["max_abs_diff_vs_fp32"],
        ]
        for name, v in variants.items()
    ]
    where = f"{device}, {size.name}: {size.num_frames}x{size.height}x{size.width}, {size.steps} steps"
    print(
        table(
            f"SVD-XT architecture, random weights ({where}; vsteer ÷ bare = {figures['vsteer_vs_bare']:.3f})",
            [
                "variant",
                "s/clip",
                "UNet TFLOP/s",
                "of matmul peak",
                "peak GiB",
                "reserved GiB",
                "decode share",
                "max |Δ| vs fp32",
            ],
            rows,
        )
    )
    print(f"\nmatmul peak {peak_tflops:.3g} TFLOP/s ({peak_what}); UNet call {flops / 1e12:.3g} TFLOP")
    if not cuda:
        print("NOTE: no CUDA device: reduced size on the CPU, these are not GPU figures.")
    print(f"wrote {write_result('gpu_svd', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
