"""Host memory of a job's last stages: its decoded frames and the outputs written from them.

After the decode a worker's host holds every frame of the job in float32: S = clips x frames x H x W x
3 x 4 bytes (177 MiB for one 25 x 576 x 1024 clip, 2.8 GiB for a 16-clip sweep of them). This measures
what the outputs (`workers.outputs.finish_outputs`: audit, MP4s, contact sheet, poster, preview, raw
frames) add on top, in a fresh process per case: the peak resident memory (sampled every 2 ms, and the
kernel's own peak) above what the process held with the frames in hand, in MiB and in units of S.

The decode's own share, the frames it assembles from the VAE's output, is counted by `tracemalloc`
(numpy's allocations) while the tiny model decodes a small sweep: its peak in units of S.

    python -m bench.host_memory                            # one clip and a 4-clip sweep, 25 x 576 x 1024
    python -m bench.host_memory --clips 16 --threads 4     # a 16-clip sweep
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import rss_mib, table, write_result

SAMPLE_S = 0.002


class PeakRss:
    """The largest resident set size of this process while in the block, sampled on a thread."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(SAMPLE_S)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def lean_frames(clips: int, frames: int, height: int, width: int) -> np.ndarray:
    """K x F x H x W x 3 float32 in [0, 1], filled in place (no temporary the size of the whole):
    each clip a texture shifted a few pixels per frame, so that the audit and the encoders see motion."""
    out = np.empty((clips, frames, height, width, 3), np.float32)
    rng = np.random.default_rng(0)
    for k in range(clips):
        texture = rng.random((height, width + 4 * frames, 3), dtype=np.float32)
        for f in range(frames):
            out[k, f] = texture[:, 4 * f : 4 * f + width]
    return out


def outputs_child(clips: int, frames: int, height: int, width: int, threads: int) -> dict[str, Any]:
    """In this (fresh) process: make the frames, then write the outputs; memory above the frames."""
    from api_schemas import JobRequest
    from workers.outputs import finish_outputs

    pixels = lean_frames(clips, frames, height, width)
    latents = np.random.default_rng(1).standard_normal((clips, frames, 4, height // 8, width // 8), np.float32)
    document: dict[str, Any] = {"image": "asset:a", "output": {"raw": True, "preview": "gif", "fps": 7}}
    if clips > 1:
        document["sweep"] = {"target": "seed", "to": 1, "count": clips}
    job = JobRequest.model_validate(document)
    held = rss_mib()
    kernel_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(prefix="vsteer-host-memory-") as tmp, PeakRss() as sampled:
        started = time.perf_counter()
        finish_outputs(pixels, latents, job, Path(tmp), threads)
        seconds = time.perf_counter() - started
    kernel_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The kernel's peak counts only if it was reached during the outputs (it is monotonic).
    peak = max(sampled.peak, kernel_peak if kernel_peak > kernel_before else 0.0)
    frames_mib = pixels.nbytes / 2**20
    return {
        "frames_mib": frames_mib,
        "held_mib": held,
        "peak_mib": peak,
        "added_mib": peak - held,
        "added_per_frames": (peak - held) / frames_mib,
        "seconds": seconds,
    }


def decode_traced(clips: int, frames: int, height: int, width: int) -> dict[str, Any]:
    """numpy's peak allocation while the tiny model decodes `clips` random clips, in units of S."""
    import torch

    from bench.common import tiny_model_dir
    from workers.models import ModelRegistry, ModelSpec, quiet_libraries

    quiet_libraries()
    registry = ModelRegistry({"tiny": ModelSpec(name="tiny", source=str(tiny_model_dir()))}, default="tiny")
    pipe = registry.get("tiny").pipeline
    scale = pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((clips, frames, 4, height // scale, width // scale), generator=generator)
    tracemalloc.start()
    decoded = pipe.decode(latents, decode_chunk_size=frames)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"frames_mib": decoded.nbytes / 2**20, "peak_mib": peak / 2**20, "peak_per_frames": peak / decoded.nbytes}


def run_child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.host_memory", "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="clips of the sweep case")
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=4, help="output threads (the engine's default cap)")
    parser.add_argument("--decode-size", default="4x8x128x256", help="clips x frames x H x W of the decode count")
    parser.add_argument("--child", choices=["outputs", "decode"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/host_memory.json)")
    args = parser.parse_args(argv)
    shape = (args.frames, args.height, args.width)
    if args.child == "outputs":
        print(json.dumps(outputs_child(args.clips, *shape, args.threads)))
        return {}
    decode_shape = tuple(int(n) for n in args.decode_size.split("x"))
    if args.child == "decode":
        print(json.dumps(decode_traced(*decode_shape)))
        return {}

    size = ["--frames", str(args.frames), "--height", str(args.height), "--width", str(args.width)]
    cases = {
        "one clip": run_child(["outputs", "--clips", "1", "--threads", str(args.threads), *size]),
        f"sweep of {args.clips}": run_child(
            ["outputs", "--clips", str(args.clips), "--threads", str(args.threads), *size]
        ),
    }
    decode = run_child(["decode", "--decode-size", args.decode_size])
    figures: dict[str, Any] = {
        "shape": {"num_frames": args.frames, "height": args.height, "width": args.width},
        "threads": args.threads,
        "outputs": cases,
        "decode": {"size": args.decode_size, **decode},
    }
    rows = [
        [name, f"{c['frames_mib']:.0f}", f"{c['added_mib']:.0f}", f"{c['added_per_frames']:.2f}", f"{c['seconds']:.1f}"]
        for name, c in cases.items()
    ]
    title = f"Host memory the outputs add above the frames S ({'x'.join(map(str, shape))}, {args.threads} threads)"
    print(table(title, ["case", "S MiB", "added MiB", "added ÷ S", "s"], rows))
    print(
        f"decode ({args.decode_size}, tiny model): numpy's peak {decode['peak_mib']:.1f} MiB = "
        f"{decode['peak_per_frames']:.2f} S"
    )
    print(f"wrote {write_result('host_memory', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
