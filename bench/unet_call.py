"""One guided UNet call of the SVD-XT architecture: diffusers' attention processors vs vsteer's.

The same random weights and inputs, interleaved (A B B A …); bare runs on its own copy of the UNet
with diffusers' processors, the engine's on the engine's, so no call pays for installing processors:

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
import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.common import interleave, table, write_result
from bench.gpu_svd import SIZES, build_components, call_unet, counted_flops, guided_inputs, sync


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
    from workers.pipeline import SteerableVideoPipeline

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
    components = build_components(base, device, dtype)
    pipe = SteerableVideoPipeline(**components)  # the engine's processors
    stock = SteerableVideoPipeline(**{**components, "unet": copy.deepcopy(components["unet"])})
    stock.unet.set_attn_processor(AttnProcessor2_0())
    generator = torch.Generator(device).manual_seed(0)

    def noise(*shape: int, **kwargs: Any) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, **kwargs)

    plain = guided_inputs(pipe.unet, size, 1, device, noise)
    steered = guided_inputs(pipe.unet, size, 3, device, noise)
    outputs: dict[str, torch.Tensor] = {}

    def variant(name: str, on: SteerableVideoPipeline, inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            outputs[name] = call_unet(on, inputs)
            sync(device)

        return run

    variants = {
        "bare": variant("bare", stock, plain),
        "vsteer": variant("vsteer", pipe, plain),
        "vsteer steered": variant("vsteer steered", pipe, steered),
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
    print(f"wrote {write_result('unet_call', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
