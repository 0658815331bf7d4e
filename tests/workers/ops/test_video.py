"""`video`: editing a real clip (SDEdit): where denoising starts, what the UNet sees, and the no-ops."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from api_schemas import JobRequest
from api_schemas.video import VideoEdit
from tests.workers.conftest import SIZE
from vsteer.pictures import panning_clip
from workers.engine import run_job
from workers.errors import VideoUnreadable
from workers.images import ImageResolver
from workers.ops.video import encode_clip
from workers.video_input import read_clip


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    path.write_bytes(panning_clip(3, (96, 64), frames=12, fps=8))
    return path


def video_job(clip_path: Path, **video: Any) -> dict[str, Any]:
    return {
        "seed": 5,
        "generation": dict(SIZE),
        "video": {"source": str(clip_path), "strength": 0.5, **video},
        "output": {"raw": True, "preview": "none"},
    }


class UNetCalls:
    """Counts the UNet's calls and keeps the latent half of each call's input."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.inputs: list[torch.Tensor] = []
        self.handle = unet.register_forward_pre_hook(self._record)

    def _record(self, module: Any, args: tuple[Any, ...]) -> None:
        self.inputs.append(args[0].detach().clone())

    def __len__(self) -> int:
        return len(self.inputs)


@pytest.fixture
def unet_calls(registry):
    calls = UNetCalls(registry.get("tiny").pipeline.unet)
    yield calls
    calls.handle.remove()


def run(doc: dict[str, Any], registry, out: Path):
    outputs = run_job(JobRequest.model_validate(doc), out, registry=registry, images=ImageResolver(allow_paths=True))
    return outputs, np.load(outputs.files["frames"])


def clip_frames(clip_path: Path) -> np.ndarray:
    """The clip as the job reads it: 5 frames at 7 fps, cropped to 64 x 64, in [0, 1]."""
    spec = VideoEdit(source=str(clip_path), strength=0.5)
    clip = read_clip(clip_path.read_bytes(), spec, SIZE["num_frames"], 7, SIZE["width"], SIZE["height"])
    return clip.frames


def test_strength_zero_is_the_clips_vae_round_trip_with_no_unet_call(registry, clip_path, unet_calls, tmp_path):
    outputs, frames = run(video_job(clip_path, strength=0.0), registry, tmp_path)
    assert len(unet_calls) == 0
    pipe = registry.get("tiny").pipeline
    latents = encode_clip(pipe, clip_frames(clip_path), SIZE["num_frames"])
    expected = pipe.decode(latents, SIZE["num_frames"])[0]
    np.testing.assert_allclose(frames, expected, atol=1e-5)
    assert outputs.manifest["steering"]["video"]["steps_run"] == 0


@pytest.mark.parametrize(("noise", "calls"), [("random", 2), ("inverted", 4)])
def test_unet_calls_follow_strength(noise, calls, registry, clip_path, unet_calls, tmp_path):
    # 4 steps at strength 0.5: steps 2 and 3 run; inversion adds one call per step it climbs.
    outputs, _ = run(video_job(clip_path, strength=0.5, noise=noise), registry, tmp_path)
    assert len(unet_calls) == calls
    video = outputs.manifest["steering"]["video"]
    assert (video["first_step"], video["steps_run"], video["noise"]) == (2, 2, noise)


def test_the_unet_receives_the_clips_latents(registry, clip_path, unet_calls, tmp_path):
    pipe = registry.get("tiny").pipeline
    clean = encode_clip(pipe, clip_frames(clip_path), SIZE["num_frames"])
    channels = clean.shape[2]
    pipe.scheduler.set_timesteps(SIZE["steps"])
    sigmas = [float(s) for s in pipe.scheduler.sigmas]

    # Inverted: the first call (at the last step's sigma) is given the clean latents themselves.
    run(video_job(clip_path, strength=0.5, noise="inverted"), registry, tmp_path / "inverted")
    first = unet_calls.inputs[0][:, :, :channels]  # guided: [negative, positive] rows
    scale = (sigmas[SIZE["steps"] - 1] ** 2 + 1) ** 0.5
    for row in first:
        torch.testing.assert_close(row * scale, clean[0], atol=1e-5, rtol=1e-5)

    # Random: the first denoising call is given the clean latents plus the job's noise at sigma_2.
    unet_calls.inputs.clear()
    run(video_job(clip_path, strength=0.5, noise="random"), registry, tmp_path / "random")
    generator = torch.Generator("cpu").manual_seed(5)
    noise = pipe.draw_noise(generator, SIZE["num_frames"], SIZE["height"], SIZE["width"]).latents
    first = unet_calls.inputs[0][:, :, :channels]
    scale = (sigmas[2] ** 2 + 1) ** 0.5
    for row in first:
        torch.testing.assert_close(row * scale, (clean + sigmas[2] * noise)[0], atol=1e-4, rtol=1e-5)


def test_inverted_noise_reconstructs_the_clip_better_than_random(registry, clip_path, tmp_path):
    source = clip_frames(clip_path).astype(np.float32) / 255.0
    errors = {}
    for noise in ("random", "inverted"):
        _, frames = run(video_job(clip_path, strength=0.5, noise=noise), registry, tmp_path / noise)
        errors[noise] = float(np.abs(frames - source).mean())
    assert errors["inverted"] < errors["random"], errors


@pytest.mark.parametrize("space", ["embedding", "latent"])
def test_a_direction_of_strength_zero_on_a_video_job_is_a_no_op(space, registry, clip_path, tmp_path):
    doc = video_job(clip_path, strength=0.5)
    _, plain = run(doc, registry, tmp_path / "plain")
    width = 32 if space == "embedding" else 4
    direction = {"source": {"vector": [1.0] * width}, "space": space, "strength": 0.0}
    outputs, steered = run({**doc, "directions": [direction]}, registry, tmp_path / "steered")
    assert "directions" in outputs.manifest["steering"]
    np.testing.assert_allclose(steered, plain, atol=1e-5)
    # ...and a direction that is not zero does change the edit.
    _, moved = run({**doc, "directions": [{**direction, "strength": 3.0}]}, registry, tmp_path / "moved")
    assert np.abs(moved - plain).max() > 1e-3


def test_the_conditioning_image_is_the_first_frame_unless_given(registry, clip_path, image_paths, tmp_path):
    doc = video_job(clip_path, strength=0.5)
    outputs, first_frame = run(doc, registry, tmp_path / "first")
    assert outputs.manifest["steering"]["video"]["conditioning"] == "first frame"
    record = outputs.manifest["inputs"]["video.source"]
    assert record["sha256"].startswith("sha256:") and record["source_frames"] == [0, 1, 2, 3, 4]
    outputs, given = run({**doc, "image": str(image_paths[0])}, registry, tmp_path / "given")
    assert outputs.manifest["steering"]["video"]["conditioning"] == "image"
    assert np.abs(given - first_frame).max() > 1e-3


def test_variation_moves_a_random_edit(registry, clip_path, tmp_path):
    doc = video_job(clip_path, strength=0.5)
    _, plain = run(doc, registry, tmp_path / "plain")
    _, same = run({**doc, "variation": {"seed": 9, "strength": 0.0}}, registry, tmp_path / "zero")
    _, varied = run({**doc, "variation": {"seed": 9, "strength": 1.0}}, registry, tmp_path / "one")
    np.testing.assert_allclose(same, plain, atol=1e-5)
    assert np.abs(varied - plain).max() > 1e-3


def test_a_clip_too_short_or_undecodable_fails_naming_the_source(registry, clip_path, tmp_path):
    with pytest.raises(VideoUnreadable, match=r"1\.500 s long") as short:
        run(
            {**video_job(clip_path), "video": {"source": str(clip_path), "strength": 0.5, "start": 1.0}},
            registry,
            tmp_path,
        )
    assert short.value.field == "video.source"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip_path.read_bytes()[:300])
    with pytest.raises(VideoUnreadable, match=r"cannot be decoded|no video stream|no frames"):
        run(video_job(broken), registry, tmp_path / "broken")


def test_a_seed_sweep_edits_the_clip_along_its_noise_path(registry, clip_path, tmp_path):
    doc = video_job(clip_path, strength=0.5)
    _, single = run(doc, registry, tmp_path / "single")
    outputs, clips = run({**doc, "sweep": {"target": "seed", "to": 9, "count": 2}}, registry, tmp_path / "sweep")
    assert clips.shape[:2] == (2, SIZE["num_frames"]) and outputs.manifest["steering"]["video"]["steps_run"] == 2
    # Clip 0 is the job's own noise: the single edit, to batching's float rounding; clip 1 is another edit.
    np.testing.assert_allclose(clips[0], single, atol=1e-4)
    assert np.abs(clips[1] - single).max() > 1e-3


def test_frames_are_read_at_the_jobs_fps_and_fitted_to_its_size(clip_path):
    data = clip_path.read_bytes()  # 12 frames of 96 x 64 at 8 fps
    spec = VideoEdit(source="clip.mp4", strength=0.5, start=0.5, fit="pad")
    padded = read_clip(data, spec, 3, 4, 64, 64)
    # Frame f shows at 0.5 + f / 4 s: source frames 4, 6 and 8.
    assert padded.info["source_frames"] == [4, 6, 8] and padded.frames.shape == (3, 64, 64, 3)
    # 96 x 64 scaled into 64 x 64 is 64 x 43: black bars above and below, the picture between.
    assert padded.frames[:, :5].max() == 0 and padded.frames[:, -5:].max() == 0 and padded.frames[:, 32].max() > 0
    cropped = read_clip(data, spec.model_copy(update={"fit": "crop"}), 3, 4, 64, 64).frames
    stretched = read_clip(data, spec.model_copy(update={"fit": "stretch"}), 3, 4, 64, 64).frames
    assert cropped[:, :5].max() > 0 and stretched[:, :5].max() > 0
    assert np.abs(cropped.astype(int) - stretched.astype(int)).mean() > 1


def test_an_unreadable_video_fails_the_job_with_its_own_problem_type():
    from workers.errors import input_problem

    problem = input_problem("job_1", VideoUnreadable("video.source", "the video has no frames"))
    assert problem.type.endswith("/video-unreadable") and problem.status == 422
    assert problem.field == "video.source" and "no frames" in problem.detail
