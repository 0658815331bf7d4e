"""What a trained toy model does to pictures, measured: the figures `docs/toy-model.md` reports.

`python -m workers.toy.evaluate FOLDER [--frames PNG] [--steps N]` loads the folder with diffusers'
own `StableVideoDiffusionPipeline.from_pretrained` and prints one JSON object:

- `reconstruction`: each probe still (a shape of a known colour on a known background) through the
  VAE alone, as a clip of identical frames: PSNR, the decoded shape's and background's colour beside
  the true ones (frame 0), and how much the background's colour differs between the frames (the
  temporal decoder should give every frame the same);
- `motion`: a plain clip of a red circle at several `motion_bucket_id`s: how far the shape moved
  right, and frame 0's PSNR against the conditioning image;
- `colour`: the shape's hue in the first and last frame of a clip of each probe.

With `--frames` it also writes the clips, one row per clip, as a PNG.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from workers.toy.data import COLOURS, NUM_FRAMES, still
from workers.toy.measures import displacement, hue, psnr, shape_colour, shape_hue

BACKGROUND = (60, 60, 60)
PROBES = (("circle", "red"), ("square", "blue"), ("triangle", "yellow"), ("circle", "green"))
BUCKETS = (0, 64, 127, 191, 255)


def _rgb(values: np.ndarray) -> list[int] | None:
    """An RGB in [0, 1] as 0..255 integers; None when no shape stood out to measure."""
    return None if np.isnan(values).any() else [round(float(v) * 255) for v in values]


def _finite(value: float) -> float | None:
    return round(value, 2) if np.isfinite(value) else None


def _hue(frame: np.ndarray) -> float | None:
    found = shape_hue(frame)
    return None if np.isnan(found) else round(found, 1)


def reconstruct(pipe: Any, picture: np.ndarray) -> np.ndarray:
    """NUM_FRAMES copies of the picture (H, W, 3) uint8 through the VAE's encoder mean and decoder:
    (F, H, W, 3) uint8."""
    x = torch.from_numpy(picture).permute(2, 0, 1).float()[None].repeat(NUM_FRAMES, 1, 1, 1) / 127.5 - 1
    with torch.no_grad():
        decoded = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode(), num_frames=NUM_FRAMES).sample
    return ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def generate(pipe: Any, picture: np.ndarray, motion_bucket_id: int, steps: int, seed: int = 0) -> np.ndarray:
    """A clip (F, H, W, 3) uint8 conditioned on the picture."""
    frames = pipe(
        PIL.Image.fromarray(picture),
        height=picture.shape[0],
        width=picture.shape[1],
        num_frames=NUM_FRAMES,
        num_inference_steps=steps,
        motion_bucket_id=motion_bucket_id,
        fps=7,
        decode_chunk_size=NUM_FRAMES,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).frames[0]
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def evaluate(folder: Path, steps: int = 25, frames_png: Path | None = None) -> dict[str, Any]:
    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)  # stored in float16
    pipe.set_progress_bar_config(disable=True)
    rows: list[np.ndarray] = []
    report: dict[str, Any] = {"reconstruction": [], "motion": [], "colour": []}
    for shape, colour in PROBES:
        picture = still(shape, colour, back=BACKGROUND)
        clip = reconstruct(pipe, picture)
        back = clip[0]
        report["reconstruction"].append(
            {
                "probe": f"{colour} {shape}",
                "psnr_db": round(psnr(back, picture), 2),
                "shape_rgb": _rgb(shape_colour(back)),
                "true_shape_rgb": list(COLOURS[colour]),
                "background_rgb": [int(v) for v in back[4, 4]],
                "true_background_rgb": list(BACKGROUND),
                # The standard deviation over frames of the corner's colour, averaged over R, G, B.
                "background_spread": round(float(clip[:, 4, 4].astype(np.float64).std(axis=0).mean()), 2),
            }
        )
    red = still("circle", "red", back=BACKGROUND)
    for bucket in BUCKETS:
        clip = generate(pipe, red, bucket, steps)
        rows.append(clip)
        report["motion"].append(
            {
                "motion_bucket_id": bucket,
                "displacement_px": _finite(displacement(clip)),
                "frame0_psnr_db": round(psnr(clip[0], red), 2),
            }
        )
    for shape, colour in PROBES[1:]:
        clip = generate(pipe, still(shape, colour, back=BACKGROUND), 127, steps)
        rows.append(clip)
        report["colour"].append(
            {
                "probe": f"{colour} {shape}",
                "true_hue": round(hue(np.array(COLOURS[colour]) / 255), 1),
                "first_frame_hue": _hue(clip[0]),
                "last_frame_hue": _hue(clip[-1]),
            }
        )
    if frames_png is not None:
        grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
        PIL.Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), PIL.Image.NEAREST).save(frames_png)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--frames", type=Path, default=None, help="write the clips as a PNG, one row each")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps of each clip")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(evaluate(args.folder, args.steps, args.frames), indent=1) + "\n")


if __name__ == "__main__":
    main()
