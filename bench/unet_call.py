"""One guided UNet call of the SVD-XT architecture: diffusers' attention processors vs vsteer's.

The same random-weight UNet and inputs, processors swapped between calls (A B B A …):

- `bare`: diffusers' `AttnProcessor2_0` everywhere, as `StableVideoDiffusionPipeline` runs it;
- `vsteer`: the engine's processors on a job without reference tokens (one CLIP token, as every
  plain, keyframe, direction or style job has): cross-attention over a single key skips the query and
  key projections and the attention (`workers.pipeline.attend_single_key`);
- `vsteer steered`: the engine's processors holding a steered job's per-frame context and
  reference-token bias (three tokens), the full attention path.

Reported: seconds per call (medians) and each ratio to bare, FLOPs counted for each variant (the
counter leaves out attention on the CPU), and the largest difference of vsteer's output from bare's.

    python -m bench.unet_call                  # CUDA: 25x576x1024 in float16; CPU: 4x128x256 in float32
    python -m bench.unet_call --frames 25 --height 576 --width 1024 --repeats 5
"""

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import interleave, table, write_result
from bench.gpu_svd import SIZES, Size, build_components, sync


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="the architecture")
    parser.add_argument("--frames", type=int, default=None, help="default: the size's on CUDA, 4 on the CPU")
    parser.add_argument("--height", type=int, default=None, help="default: the size's on CUDA, 128 on the CPU")
    parser.add_argument("--width", type=int, default=None, help="default: the size's on CUDA, 256 on the CPU")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/unet_call.json)")
    args = parser.parse_args(argv)

    from diffusers.models.attention_processor import AttnProcessor2_0

    from workers.models import quiet_libraries
    from workers.pipeline import SteerableVideoPipeline, _install_processors

    quiet_libraries()
    device = "cuda" if cuda else "cpu"
    dtype = torch.float16 if cuda else torch.float32
    base = SIZES[args.size]
    size = dataclasses.replace(
        base,
        num_frames=args.frames or (base.num_frames if cuda else 4),
        height=args.height or (base.height if cuda else 128),
        width=args.width or (base.width if cuda else 256),
    )
    pipe = SteerableVideoPipeline(**build_components(base, device, dtype))
    generator = torch.Generator(device).manual_seed(0)

    def noise(*shape: int, **kwargs: Any) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, **kwargs)

    plain = guided_inputs(pipe.unet, size, 1, device, noise)
    steered = guided_inputs(pipe.unet, size, 3, device, noise)
    outputs: dict[str, torch.Tensor] = {}

    def variant(name: str, processors: Callable[[], None], inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            processors()
            outputs[name] = call_unet(pipe, inputs)
            sync(device)

        return run

    def stock() -> None:
        pipe.unet.set_attn_processor(AttnProcessor2_0())

    def engine() -> None:
        _install_processors(pipe.unet, pipe._slot)

    variants = {
        "bare": variant("bare", stock, plain),
        "vsteer": variant("vsteer", engine, plain),
        "vsteer steered": variant("vsteer steered", engine, steered),
    }
    flops = {name: counted_flops(run) for name, run in variants.items()}
    timed = interleave(variants, args.repeats)
    difference = float((outputs["vsteer"].float() - outputs["bare"].float()).abs().max())

    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "architecture": base.name,
        "shape": {"num_frames": size.num_frames, "height": size.height, "width": size.width, "rows": 2},
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": args.repeats,
        "seconds": timed.summary(),
        "ratio_to_bare": {name: timed.ratio(name, "bare") for name in variants},
        "tflop_per_call": {name: value / 1e12 for name, value in flops.items()},
        "max_abs_difference_vsteer_vs_bare": difference,
    }
    rows = [
        [name, timed.median(name), figures["ratio_to_bare"][name], figures["tflop_per_call"][name]] for name in variants
    ]
    shape = f"{size.num_frames}x{size.height}x{size.width}"
    title = f"One guided UNet call, SVD-XT architecture ({base.name}) at {shape}, {figures['dtype']}, {device}"
    print(table(title, ["variant", "s/call", "÷ bare", "TFLOP counted"], rows))
    print(f"\nmax |vsteer - bare| = {difference:.3g}")
    path = write_result("unet_call", figures, args.out)
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
