"""`segments`: a long video chained from clips, each conditioned on the frame of the one before that it
starts on, the overlap started from the previous clean latents and blended with the documented weights."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import workers.segments as chain_module
from api_schemas import JobRequest
from steering.segments import overlap_weights
from workers.engine import Progress, run_job
from workers.errors import JobCanceled, JobInputError
from workers.images import ImageResolver
from workers.video import probe, to_uint8

SIZE = {"width": 64, "height": 64, "num_frames": 4, "steps": 2}
TOL = 1e-5


def job(image: Path, **fields) -> JobRequest:
    doc = {"seed": 21, "image": str(image), "generation": dict(SIZE), "output": {"raw": True, "preview": "none"}}
    return JobRequest.model_validate({**doc, **fields})


def run(request: JobRequest, registry, out: Path, **kwargs):
    return run_job(request, out, registry=registry, images=ImageResolver(allow_paths=True), **kwargs)


def frames(outputs) -> np.ndarray:
    return np.load(outputs.files["frames"])


class Recorder:
    """Records what the UNet receives and what the decoder is given (the chain's blended latents)."""

    def __init__(self, pipe) -> None:
        self.unet_inputs: list[torch.Tensor] = []
        self.decoded: list[torch.Tensor] = []
        self.handle = pipe.unet.register_forward_pre_hook(lambda m, args: self.unet_inputs.append(args[0].clone()))
        self.pipe, self.original = pipe, pipe.decode

        def decode(latents, chunk):
            self.decoded.append(latents.clone())
            return self.original(latents, chunk)

        pipe.decode = decode

    def close(self) -> None:
        self.handle.remove()
        del self.pipe.decode  # the class's own method again


@pytest.fixture
def recorder(registry):
    rec = Recorder(registry.get("tiny").pipeline)
    yield rec
    rec.close()


def test_one_segment_is_the_plain_job(registry, image_paths, tmp_path):
    plain = frames(run(job(image_paths[0]), registry, tmp_path / "plain"))
    one = run(job(image_paths[0], segments={"count": 1, "overlap": 2}), registry, tmp_path / "one")
    assert np.abs(frames(one) - plain).max() <= TOL
    assert one.manifest["segments"]["segments"][0]["seed"] == 21
    assert probe(one.files["video"]).frame_count == SIZE["num_frames"]


def test_two_segments_without_overlap_are_two_chained_plain_jobs(registry, image_paths, tmp_path):
    first = frames(run(job(image_paths[0]), registry, tmp_path / "a"))
    last = tmp_path / "last.png"
    PIL.Image.fromarray(to_uint8(first[-1:])[0]).save(last)
    second = frames(run(job(last, seed=22), registry, tmp_path / "b"))

    chained = run(job(image_paths[0], segments={"count": 2, "overlap": 0}), registry, tmp_path / "chain")
    assert frames(chained).shape == (8, 64, 64, 3)
    assert np.abs(frames(chained) - np.concatenate([first, second])).max() <= TOL
    record = chained.manifest["segments"]
    assert [s["seed"] for s in record["segments"]] == [21, 22]
    assert [s["frames"] for s in record["segments"]] == [[0, 4], [4, 8]]
    assert all(s["seconds"] > 0 for s in record["segments"])
    # The audit scores the seam beside the median difference inside the segments.
    audit = chained.manifest["metrics"]["audit"]
    (seam,) = audit["seams"]
    assert seam["between"] == [0, 1] and seam["frame"] == 4 and seam["frame_diff"] > 0
    assert audit["frame_diff_median_inside"] > 0 and len(audit["segments"]) == 2


@pytest.mark.parametrize("overlap", [2, 3])
def test_the_next_segment_is_conditioned_on_the_frame_its_overlap_starts_at(
    overlap, registry, image_paths, tmp_path, monkeypatch
):
    """Segment k + 1's first frame stands on segment k's frame F − overlap, and SVD makes a clip's first
    frame its conditioning image: conditioned on the last frame instead, the picture would jump ahead by
    the overlap at every seam."""
    pipe = registry.get("tiny").pipeline
    decoded: list[np.ndarray] = []
    handed: list[PIL.Image.Image | None] = []
    real_decode, real_segment_job = pipe.decode, chain_module.segment_job

    def decode(*args, **kwargs):
        decoded.append(real_decode(*args, **kwargs))
        return decoded[-1]

    def segment_job(plan, index, start_frame, images):
        handed.append(start_frame)
        return real_segment_job(plan, index, start_frame, images)

    monkeypatch.setattr(pipe, "decode", decode)
    monkeypatch.setattr(chain_module, "segment_job", segment_job)
    run(job(image_paths[0], segments={"count": 2, "overlap": overlap}), registry, tmp_path)

    first = to_uint8(decoded[0][0])  # segment 0's frames as decoded, before any blend
    assert handed[0] is None and handed[1] is not None
    assert np.array_equal(np.asarray(handed[1]), first[SIZE["num_frames"] - overlap])
    assert not np.array_equal(np.asarray(handed[1]), first[-1])


@pytest.mark.parametrize("blend", ["linear", "cosine"])
def test_the_overlap_starts_from_the_previous_latents_and_blends_with_the_documented_weights(
    blend, registry, image_paths, tmp_path, recorder, monkeypatch
):
    overlap, steps = 3, SIZE["steps"]
    denoised: list[torch.Tensor] = []  # the new segment's own latents, as denoising left them
    real = chain_module.blend_overlap

    def blend_and_record(previous, latents, weights):
        denoised.append(latents.clone())
        return real(previous, latents, weights)

    monkeypatch.setattr(chain_module, "blend_overlap", blend_and_record)
    request = job(image_paths[0], segments={"count": 2, "overlap": overlap, "blend": blend})
    outputs = run(request, registry, tmp_path)
    assert probe(outputs.files["video"]).frame_count == 2 * 4 - 3 == len(frames(outputs))

    previous, blended = recorder.decoded  # what each segment decoded: (1, F, C, h, w)
    tail = previous[:, 4 - overlap :]
    # The second segment's first UNet call: its noise at the first sigma, plus the previous tail.
    pipe = registry.get("tiny").pipeline
    noise = pipe.draw_noise(torch.Generator("cpu").manual_seed(22), 4, 64, 64).latents
    pipe.scheduler.set_timesteps(steps)
    sigma = pipe.scheduler.sigmas[0]
    start = noise * pipe.scheduler.init_noise_sigma
    start[:, :overlap] += tail
    seen = recorder.unet_inputs[steps][1:, :, :4]  # the positive half of the guided batch, latent channels
    assert torch.allclose(seen, start / (sigma**2 + 1) ** 0.5, atol=1e-5)

    # The blend: w_j of the previous segment, 1 - w_j of the new one, as the README gives them.
    u = np.arange(1, overlap + 1) / (overlap + 1)
    expected = 1 - u if blend == "linear" else (1 + np.cos(np.pi * u)) / 2
    assert np.allclose(outputs.manifest["segments"]["weights"], expected, atol=1e-6)
    (own,) = denoised
    assert (own[:, :overlap] - tail).abs().max() > 1e-2  # else any weights would pass
    w = torch.tensor(expected, dtype=torch.float32).view(1, overlap, 1, 1, 1)
    assert torch.allclose(blended[:, :overlap], w * tail + (1 - w) * own[:, :overlap], atol=1e-6)
    assert torch.equal(blended[:, overlap:], own[:, overlap:])


def test_blend_weights_reach_neither_end():
    assert overlap_weights(3, "linear").tolist() == [0.75, 0.5, 0.25]
    cosine = overlap_weights(3, "cosine")
    assert cosine[1] == pytest.approx(0.5) and cosine[0] == pytest.approx(0.8535534)
    assert overlap_weights(0, "cosine").numel() == 0
    with pytest.raises(ValueError, match="blend"):
        overlap_weights(2, "sigmoid")


def test_progress_runs_across_segments_and_cancel_stops_the_chain(registry, image_paths, tmp_path, recorder):
    seen: list[Progress] = []
    request = job(image_paths[0], segments={"count": 3, "overlap": 1})
    run(request, registry, tmp_path / "all", on_progress=seen.append)
    denoise = [p.step for p in seen if p.stage == "denoise"]
    assert denoise == list(range(1, 3 * SIZE["steps"] + 1)) and {p.total for p in seen if p.stage == "denoise"} == {6}
    assert [p.stage for p in seen][-1] == "video"

    calls = len(recorder.unet_inputs)
    seen.clear()

    def cancel_in_second_segment() -> bool:
        return any(p.stage == "denoise" and p.step == SIZE["steps"] + 1 for p in seen)

    with pytest.raises(JobCanceled):
        run(request, registry, tmp_path / "cancel", on_progress=seen.append, should_cancel=cancel_in_second_segment)
    assert len(recorder.unet_inputs) - calls == SIZE["steps"] + 1


def test_a_storyboard_morphs_each_later_segment_toward_its_image(registry, image_paths, tmp_path, monkeypatch):
    planned = []
    real = chain_module.plan_job_clips

    def plan(pipe, plan, images, directions):
        planned.append((plan, images))
        return real(pipe, plan, images, directions)

    monkeypatch.setattr(chain_module, "plan_job_clips", plan)
    images = [str(image_paths[1]), str(image_paths[2])]
    outputs = run(job(image_paths[0], segments={"count": 3, "overlap": 1, "images": images}), registry, tmp_path)
    assert len(frames(outputs)) == 3 * 4 - 2
    first, second, third = planned
    assert first[0].job.keyframes is None
    assert [k.at for k in second[0].job.keyframes] == [0.0, 1.0]
    storyboard = PIL.Image.open(image_paths[2]).convert("RGB")
    assert np.array_equal(np.asarray(third[1]["keyframes[1].image"]), np.asarray(storyboard))
    assert outputs.manifest["segments"]["storyboard"] is True


def test_an_overlap_as_long_as_the_models_clip_fails_naming_the_field(registry, image_paths, tmp_path):
    from workers.tiny import TINY_DEFAULTS

    generation = {k: v for k, v in SIZE.items() if k != "num_frames"}  # the model's default frames
    request = job(image_paths[0], generation=generation, segments={"count": 2, "overlap": TINY_DEFAULTS["num_frames"]})
    with pytest.raises(JobInputError) as info:
        run(request, registry, tmp_path)
    assert info.value.field == "segments.overlap" and "less than" in info.value.detail
