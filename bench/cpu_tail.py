"""The CPU work of a full-size job after the decode: audit, MP4, poster, GIF preview, raw frames.

On a GPU worker the device waits while a job's outputs are written, so this time is taken from every
job. Compared on the same frames (a synthetic pan over a textured picture, 25 x 576 x 1024):

- `before`: one task after another, the GIF's palettes chosen by Pillow's default (median cut over
  every pixel of every frame), as the runner wrote outputs before;
- `one thread`: one task after another, the engine's GIF palettes (`workers.video.gif_colours`);
- `side by side`: the engine as it runs (`workers.outputs.finish_outputs`, a thread per CPU).

It also reports the GIF preview alone with each palette, and how close each keeps the frames (PSNR
of the decoded GIF against the frames it was made from).

    python -m bench.cpu_tail                      # 25x576x1024, 4 rounds
    python -m bench.cpu_tail --frames 8 --height 128 --width 256 --repeats 1
"""

import argparse
import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageSequence

from bench.common import interleave, table, test_image, write_result


def panning_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """F x H x W x 3 float32 in [0, 1]: a window moving across a smooth picture with fine texture."""
    canvas_w, canvas_h = width + 8 * frames, height + 3 * frames
    smooth = np.asarray(test_image(seed, (canvas_w, canvas_h)), dtype=np.float32) / 255
    detail = np.random.default_rng(seed).random((canvas_h // 4, canvas_w // 4, 3)).astype(np.float32)
    texture = PIL.Image.fromarray((detail * 255).astype(np.uint8)).resize((canvas_w, canvas_h), PIL.Image.BILINEAR)
    canvas = 0.8 * smooth + 0.2 * np.asarray(texture, dtype=np.float32) / 255
    return np.stack([canvas[3 * t : 3 * t + height, 8 * t : 8 * t + width] for t in range(frames)]).astype(np.float32)


@contextlib.contextmanager
def gif_palettes(pillow: bool) -> Iterator[None]:
    """With `pillow`, frames reach Pillow's GIF writer in RGB, so it chooses each palette itself (its
    default); otherwise the engine's palettes."""
    from workers import video

    if not pillow:
        yield
        return
    saved = video.gif_colours
    video.gif_colours = lambda image: image
    try:
        yield
    finally:
        video.gif_colours = saved


def gif_psnr(path: Path, frames: np.ndarray, size: tuple[int, int]) -> float:
    """PSNR (dB) of the GIF's frames against the frames resized as the preview resizes them."""
    from workers.video import to_uint8

    wanted = [
        np.asarray(PIL.Image.fromarray(f).resize(size, PIL.Image.Resampling.LANCZOS), np.float64)
        for f in to_uint8(frames)
    ]
    with PIL.Image.open(path) as image:
        shown = [np.asarray(frame.convert("RGB"), np.float64) for frame in PIL.ImageSequence.Iterator(image)]
    mse = float(np.mean([(a - b) ** 2 for a, b in zip(shown, wanted, strict=True)]))
    return 10 * np.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (bench/results/cpu_tail.json)")
    args = parser.parse_args(argv)

    from api_schemas import JobRequest
    from workers.outputs import finish_outputs, output_threads
    from workers.settings import EngineSettings
    from workers.video import write_preview

    frames = panning_clip(args.frames, args.height, args.width)[None]
    latents = (
        np.random.default_rng(1)
        .standard_normal((1, args.frames, 4, args.height // 8, args.width // 8))
        .astype(np.float32)
    )
    job = JobRequest.model_validate({"image": "asset:a", "output": {"raw": True, "preview": "gif", "fps": 7}})
    threads = output_threads(EngineSettings().output_threads)
    folder = tempfile.TemporaryDirectory(prefix="vsteer-cpu-tail-")
    work = Path(folder.name)

    def tail(count: int, pillow: bool) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            with gif_palettes(pillow):
                _, _, busy = finish_outputs(frames, latents, job, work / "job", threads=count)
            return busy

        return run

    def preview(pillow: bool) -> Callable[[], None]:
        def run() -> None:
            with gif_palettes(pillow):
                write_preview(frames[0], work / ("pillow.gif" if pillow else "vsteer.gif"), fps=7)

        return run

    timed = interleave(
        {
            "before": tail(1, pillow=True),
            "one thread": tail(1, pillow=False),
            "side by side": tail(threads, pillow=False),
            "GIF, Pillow's palettes": preview(pillow=True),
            "GIF, vsteer's palettes": preview(pillow=False),
        },
        args.repeats,
    )
    size = PIL.Image.open(work / "vsteer.gif").size
    psnr = {name: gif_psnr(work / f"{name}.gif", frames[0], size) for name in ("pillow", "vsteer")}
    sizes = {name: (work / f"{name}.gif").stat().st_size for name in ("pillow", "vsteer")}
    folder.cleanup()
    figures: dict[str, Any] = {
        "shape": {"num_frames": args.frames, "height": args.height, "width": args.width},
        "threads": threads,
        "repeats": args.repeats,
        "seconds": timed.summary(),
        "ratio_to_before": {name: timed.ratio(name, "before") for name in ("one thread", "side by side")},
        "gif_ratio": timed.ratio("GIF, vsteer's palettes", "GIF, Pillow's palettes"),
        "gif_psnr_db": psnr,
        "gif_bytes": sizes,
    }
    rows: list[list[Any]] = [
        [name, timed.median(name), figures["ratio_to_before"].get(name, 1.0), ""]
        for name in ("before", "one thread", "side by side")
    ]
    rows += [
        ["GIF preview, Pillow's palettes", timed.median("GIF, Pillow's palettes"), "", f"{psnr['pillow']:.2f} dB"],
        [
            "GIF preview, vsteer's palettes",
            timed.median("GIF, vsteer's palettes"),
            figures["gif_ratio"],
            f"{psnr['vsteer']:.2f} dB",
        ],
    ]
    shape = f"{args.frames}x{args.height}x{args.width}"
    print(
        table(
            f"A job's CPU work after the decode ({shape}, {threads} threads)",
            ["variant", "s", "ratio", "GIF PSNR"],
            rows,
        )
    )
    print(f"wrote {write_result('cpu_tail', figures, args.out)}")
    return figures


if __name__ == "__main__":
    main()
