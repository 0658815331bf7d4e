"""The semantic suite's scenes: pictures and clips the toy model knows, jobs run in-process on it, and
what each operation does to them, measured.

Every figure the tests assert comes from a function here, so the figures `docs/toy-model.md` reports
and the thresholds the tests hold are the same measurement: `python -m tests.semantic.scenes` prints
them all as JSON.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from api_schemas import JobRequest
from workers.audit import audit_frames
from workers.engine import run_job
from workers.fitting import encode_images, fit
from workers.images import ImageResolver
from workers.models import ModelRegistry, ModelSpec
from workers.toy import TOY, TOY_DEFAULTS, TOY_FOLDER
from workers.toy.data import COLOURS, NUM_FRAMES, ClipSpec, render, still
from workers.toy.measures import centroids, channel_share, displacement, hue, hue_distance, psnr, shape_colour
from workers.video import write_mp4

STEPS = 15  # denoising steps of every job: the toy's clips are clean from about 10
SEED = 3
FPS = 7
BUCKETS = (0, 64, 127, 191, 255)
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
BACK = (60, 60, 60)


def toy_registry(tiny_folder: Path | None = None, toy_folder: Path = TOY_FOLDER) -> ModelRegistry:
    """The toy model (and the random-weight tiny one beside it, given its folder) in a registry."""
    specs = {TOY: ModelSpec(name=TOY, source=str(toy_folder), **TOY_DEFAULTS)}  # type: ignore[arg-type]
    if tiny_folder is not None:
        specs["tiny"] = ModelSpec(name="tiny", source=str(tiny_folder), width=64, height=64, num_frames=6)
    return ModelRegistry(specs, default=TOY)


@dataclass
class Scenes:
    """Runs jobs on the toy model, with the pictures and clips they use written under `folder`."""

    registry: ModelRegistry
    folder: Path
    _runs: int = 0

    def picture(self, shape: str, colour: str, x: float = 24.0, y: float = 32.0, back: tuple = BACK) -> str:
        """A still of one shape on a plain background, as a PNG path for a job."""
        path = self.folder / f"{shape}-{colour}-{x:g}-{y:g}-{'-'.join(map(str, back))}.png"
        if not path.exists():
            PIL.Image.fromarray(still(shape, colour, centre=(x, y), back=back)).save(path)
        return str(path)

    def array(self, path: str) -> np.ndarray:
        return np.asarray(PIL.Image.open(path).convert("RGB"))

    def clip(self, shape: str, colour: str, x: float, bucket: int, frames: int = NUM_FRAMES) -> tuple[str, np.ndarray]:
        """A synthetic clip of the shape gliding right, written as an MP4 at FPS; its path and frames."""
        spec = ClipSpec(shape, colour, "plain", (BACK, BACK), 10.0, (x, 32.0), bucket, FPS, frames)
        frames_u8 = render(spec)
        path = self.folder / f"clip-{shape}-{colour}-{x:g}-{bucket}.mp4"
        write_mp4(frames_u8, path, fps=FPS)
        return str(path), frames_u8

    def run(self, model: str = TOY, **fields: Any) -> np.ndarray:
        """The frames (F, H, W, 3) uint8 of a job of `fields` on `model`, at the suite's settings."""
        generation = {"num_frames": NUM_FRAMES, "width": 64, "height": 64, "steps": STEPS, "fps": FPS}
        generation.update(fields.pop("generation", {}))
        doc = {"model": model, "seed": SEED, "generation": generation, "output": {"raw": True, "preview": "none"}}
        doc.update(fields)
        self._runs += 1
        out = self.folder / f"run{self._runs}"
        outputs = run_job(
            JobRequest.model_validate(doc), out, registry=self.registry, images=ImageResolver(allow_paths=True)
        )
        frames = np.load(outputs.files["frames"])
        return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def spearman(x: Any, y: Any) -> float:
    """Rank correlation of two sequences without ties."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def shape_hues(frames: np.ndarray) -> list[float]:
    return [hue(shape_colour(frame)) for frame in frames]


# -- the measurements ------------------------------------------------------------------------------


def plain_job(scenes: Scenes) -> dict[str, Any]:
    """Frame 0 against the conditioning image, and the shape's travel at each motion bucket."""
    image = scenes.picture("circle", "red")
    clips = {bucket: scenes.run(image=image, generation={"motion_bucket_id": bucket}) for bucket in BUCKETS}
    travel = [displacement(clips[b]) for b in BUCKETS]
    return {
        "frame0_psnr_db": psnr(clips[127][0], scenes.array(image)),
        "displacement_px": travel,
        "rank_correlation": spearman(BUCKETS, travel),
        "path_127": centroids(clips[127])[:, 0].tolist(),
    }


def morph(scenes: Scenes) -> dict[str, Any]:
    """A keyframe morph from a red circle to a blue square: the shape's hue over the frames, per-frame
    (slerp) against bidirectional conditioning, and how close each clip's last frame is to the last keyframe."""
    a, b = scenes.picture("circle", "red"), scenes.picture("square", "blue", x=40.0)
    keys = [{"image": a, "at": 0.0}, {"image": b, "at": 1.0}]
    result: dict[str, Any] = {}
    for interpolation in ("slerp", "bidirectional"):
        frames = scenes.run(keyframes=keys, interpolation=interpolation)
        hues = shape_hues(frames)
        result[interpolation] = {
            "hue": hues,
            "distance_to_red": [hue_distance(h, hue(np.array(COLOURS["red"]) / 255)) for h in hues],
            "last_frame_psnr_to_b_db": psnr(frames[-1], scenes.array(b)),
        }
    return result


def style(scenes: Scenes) -> dict[str, Any]:
    """AdaIN toward a green picture at each strength: the frames' green share; strength 0 against a plain job."""
    image = scenes.picture("circle", "red")
    green = scenes.picture("circle", "green", back=(40, 120, 50))
    plain = scenes.run(image=image)
    shares, zero_diff = [], None
    for strength in STRENGTHS:
        frames = scenes.run(image=image, style={"image": green, "strength": strength})
        shares.append(channel_share(frames, 1))
        if strength == 0.0:
            zero_diff = float(np.abs(frames.astype(int) - plain.astype(int)).max())
    return {"green_share": shares, "plain_green_share": channel_share(plain, 1), "strength0_max_diff": zero_diff}


def contrastive_direction(scenes: Scenes) -> dict[str, Any]:
    """A latent direction fitted with `contrastive` from pairs (a red circle → the same circle in blue, at
    several places), with a position direction (the circle moved right) preserved: the shape's blueness
    and its place at each strength."""
    model = scenes.registry.get(TOY)
    places = [(x, y) for x in (20.0, 32.0, 44.0) for y in (20.0, 44.0)]

    def encoded(colour: str, dx: float = 0.0) -> torch.Tensor:
        images = [PIL.Image.open(scenes.picture("circle", colour, x + dx, y)).convert("RGB") for x, y in places]
        return encode_images(model, images, "latent", 64, 64)

    red, blue, moved = encoded("red"), encoded("blue"), encoded("red", 8.0)
    colour = fit("contrastive", red, X_b=blue).vectors[0]
    position = fit("contrastive", red, X_b=moved).vectors[0]
    image = scenes.picture("circle", "red", x=30.0)
    blueness, place = [], []
    for strength in (0.0, 0.5, 1.0, 1.5, 2.0):
        frames = scenes.run(
            image=image,
            generation={"motion_bucket_id": 0},
            directions=[
                {
                    "source": {"vector": colour.tolist()},
                    "space": "latent",
                    "strength": strength,
                    "preserve": [{"vector": position.tolist()}],
                }
            ],
        )
        rgb = np.array([shape_colour(f) for f in frames]).mean(axis=0)
        blueness.append(float(rgb[2] - rgb[0]))
        place.append(float(np.nanmean(centroids(frames)[:, 0])))
    cosine = float(colour @ position / (colour.norm() * position.norm()))
    return {"blue_minus_red": blueness, "centroid_x": place, "cosine_colour_position": cosine}


def references(scenes: Scenes) -> dict[str, Any]:
    """A red circle anchored by references of a blue square: the shape's colour distance to blue per weight."""
    image = scenes.picture("circle", "red")
    ref = scenes.picture("square", "blue")
    blue = np.array(COLOURS["blue"]) / 255
    distances = []
    for weight in STRENGTHS:
        frames = scenes.run(image=image, references=[{"image": ref, "weight": weight}])
        colours = np.array([shape_colour(f) for f in frames])
        distances.append(float(np.nanmean(np.linalg.norm(colours - blue, axis=1))))
    return {"distance_to_blue": distances}


def video_edit(scenes: Scenes) -> dict[str, Any]:
    """Editing a clip of a red circle gliding right, conditioned on a blue square elsewhere: the shape's
    path against the clip's at low strength, and the colour against the conditioning image's at high."""
    source, clip = scenes.clip("circle", "red", 14.0, 200)
    image = scenes.picture("square", "blue", x=44.0, y=20.0)
    truth = centroids(clip)
    result: dict[str, Any] = {}
    for strength in (0.2, 1.0):
        frames = scenes.run(image=image, video={"source": source, "strength": strength})
        path = centroids(frames)
        colours = np.array([shape_colour(f) for f in frames])
        result[str(strength)] = {
            "centroid_error_px": float(np.nanmean(np.linalg.norm(path - truth, axis=1))),
            "distance_to_image_centre_px": float(np.nanmean(np.linalg.norm(path - np.array([44.0, 20.0]), axis=1))),
            "blue_minus_red": float(np.nanmean(colours[:, 2] - colours[:, 0])),
        }
    return result


def segments(scenes: Scenes) -> dict[str, Any]:
    """Two segments of a gliding circle at several overlaps: how far the step across the seam (from the
    last frame of the first segment's own to the first the second segment gives) is from the median
    step, beside the largest such distance of any other step (the toy's own unevenness)."""
    image = scenes.picture("circle", "red", x=14.0)
    result: dict[str, Any] = {}
    for overlap in (0, 1, 2, 3):
        frames = scenes.run(image=image, segments={"count": 2, "overlap": overlap})
        path = centroids(frames)[:, 0]
        steps = np.diff(path)
        seam = NUM_FRAMES - overlap - 1  # steps[seam] goes from frame seam to the second segment's first
        median = float(np.median(steps))
        others = np.abs(np.delete(steps, seam) - median)
        result[str(overlap)] = {
            "path_x": path.tolist(),
            "seam_step_px": float(steps[seam]),
            "seam_jump_px": float(abs(steps[seam] - median)),
            "largest_other_jump_px": float(others.max()),
        }
    return result


def flicker(scenes: Scenes) -> dict[str, Any]:
    """The audit's flicker (and its two parts) of a plain job on the toy model and on the random-weight
    tiny one, each at its own frame count."""
    image = scenes.picture("circle", "red")
    scores = {}
    for model, frames in ((TOY, NUM_FRAMES), ("tiny", 6)):
        clip = scenes.run(model=model, image=image, generation={"num_frames": frames})
        report = audit_frames(clip.astype(np.float32) / 255)
        scores[model] = {"flicker": report.flicker, "luma": report.luma_flicker, "change": report.change_flicker}
    return scores


MEASURES = (plain_job, morph, style, contrastive_direction, references, video_edit, segments, flicker)


def main() -> None:
    """`python -m tests.semantic.scenes [--toy FOLDER] [MEASURE ...]`: the measurements as JSON."""
    import argparse
    import tempfile

    from workers.tiny import save_tiny_svd

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--toy", type=Path, default=TOY_FOLDER, help="the toy model's folder")
    parser.add_argument("measures", nargs="*", help="which to run (all when none)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = save_tiny_svd(Path(tmp) / "tiny-svd")
        scenes = Scenes(toy_registry(tiny, args.toy), Path(tmp))
        names = args.measures or [m.__name__ for m in MEASURES]
        report = {m.__name__: m(scenes) for m in MEASURES if m.__name__ in names}
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
