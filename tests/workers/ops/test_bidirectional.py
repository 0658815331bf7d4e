"""`interpolation: bidirectional`: each step forward on the first keyframe and time-flipped on the last,
the denoised estimate's end frames held to the keyframes' latents."""

import pytest
import torch

from api_schemas import JobRequest
from tests.workers.conftest import SIZE
from workers.engine import Progress, run_job
from workers.errors import JobCanceled
from workers.images import ImageResolver
from workers.ops.bidirectional import BidirectionalOp
from workers.ops.keyframes import KeyframesOp

# The final latents' end frames against the keyframes' latents. The last step goes to sigma 0, where
# Euler returns x − (x − x̂₀) for the held estimate x̂₀: the keyframe's latent up to float32 rounding of
# latents of magnitude ~1 (an ulp is 1.2e-7 there; measured 2e-10 on the tiny model). A morph that
# only conditions on the keyframes lands ~1 away (measured 1.7 and 2.3).
END_TOL = 1e-6


def keys(paths, a=1, b=2):
    return [{"image": str(paths[a]), "at": 0.0}, {"image": str(paths[b]), "at": 1.0}]


class UNetCalls:
    def __init__(self, unet: torch.nn.Module) -> None:
        self.count = 0
        self.handle = unet.register_forward_pre_hook(self._count)

    def _count(self, module, args) -> None:
        self.count += 1


@pytest.fixture
def unet_calls(registry):
    calls = UNetCalls(registry.get("tiny").pipeline.unet)
    yield calls
    calls.handle.remove()


def denoise(job):
    conditioning, noise, _ = job.stack(job.clips)
    return job.ctx.pipe(conditioning, noise, SIZE["steps"], output_type="latent")


def bidirectional(planned, image_paths, **fields):
    return planned(image=None, keyframes=keys(image_paths), interpolation="bidirectional", **fields)


def test_the_flipped_pass_is_conditioned_on_the_last_keyframe(planned, image_paths):
    job = bidirectional(planned, image_paths)
    keyframes, op = job.operations
    assert isinstance(keyframes, KeyframesOp) and isinstance(op, BidirectionalOp)
    cond = job.clips[0].state.conditioning
    # Forward: the first keyframe over every frame (nothing interpolated); flipped: the last one.
    assert torch.equal(cond.embeddings, cond.key_embeddings[0].expand_as(cond.embeddings))
    assert torch.equal(cond.latents, cond.key_latents[0].expand_as(cond.latents))
    assert cond.reverse is not None
    assert torch.equal(cond.reverse.embeddings, cond.key_embeddings[1].expand_as(cond.embeddings))
    assert torch.equal(cond.reverse.latents, cond.key_latents[1].expand_as(cond.latents))
    # The ends are the keyframes' clean latents (no augmentation noise), scaled as the decoder reads them.
    pipe, clean = job.ctx.pipe, torch.zeros((1, 3, 64, 64))
    for i, path in enumerate(("keyframes[0].image", "keyframes[1].image")):
        latent = pipe.encode_image(job.ctx.images[path], 64, 64, clean, 0.0).latent
        assert torch.allclose(cond.ends[i], latent * pipe.vae.config.scaling_factor, atol=1e-6)
    assert not torch.allclose(cond.ends[0], cond.ends[1], atol=1e-2)

    stacked = job.stack(job.clips)[0]
    assert stacked.reverse is not None and stacked.reverse.seed == 5
    assert torch.equal(stacked.reverse.conditioning.tokens[0, :, 0], cond.reverse.embeddings)
    assert torch.equal(stacked.reverse.conditioning.guidance, stacked.guidance)  # each pass's first frame at min
    assert job.clips[0].report["method"] == "bidirectional"
    assert op.describe(job.ctx)["unet_calls_per_step"] == 2


def test_what_a_direction_adds_per_frame_moves_to_the_flipped_frames(planned, image_paths):
    vector = torch.linspace(-1, 1, 32).tolist()
    direction = {"source": {"vector": vector}, "strength": 2.0, "frames": [0.0, 0.25]}
    job = bidirectional(planned, image_paths, directions=[direction])
    cond = job.clips[0].state.conditioning
    added = cond.embeddings - cond.key_embeddings[0]
    assert added[0].abs().max() > 0.1 and torch.equal(added[-1], torch.zeros_like(added[-1]))
    # The flipped pass's frame F - 1 - f is frame f with the last keyframe in place of the first.
    flipped_back = cond.reverse.embeddings.flip(0) - cond.key_embeddings[1]
    assert torch.allclose(flipped_back, added, atol=1e-6)


def test_deterministic_for_a_seed_and_the_ends_meet_the_keyframes(planned, image_paths):
    job = bidirectional(planned, image_paths)
    first, again = denoise(job), denoise(bidirectional(planned, image_paths))
    assert torch.equal(first, again)
    assert (denoise(bidirectional(planned, image_paths, seed=6)) - first).abs().max() > 1e-2

    ends = job.clips[0].state.conditioning.ends
    assert (first[0, 0] - ends[0]).abs().max() <= END_TOL
    assert (first[0, -1] - ends[1]).abs().max() <= END_TOL
    # The middle frames are the sampler's own.
    assert (first[0, 2] - ends[0]).abs().max() > 0.1 and (first[0, 2] - ends[1]).abs().max() > 0.1

    morph = denoise(planned(image=None, keyframes=keys(image_paths), interpolation="slerp"))
    assert (morph[0, 0] - ends[0]).abs().max() > 0.1
    assert (morph[0, -1] - ends[1]).abs().max() > 0.1


def test_a_batched_seed_sweep_holds_every_clips_ends(planned, image_paths):
    sweep = bidirectional(planned, image_paths, sweep={"target": "seed", "to": 9, "count": 2})
    assert len(sweep.batches()) == 1 and len(sweep.clips) == 2
    latents = denoise(sweep)
    ends = sweep.clips[0].state.conditioning.ends
    for k in range(2):
        assert (latents[k, 0] - ends[0]).abs().max() <= END_TOL
        assert (latents[k, -1] - ends[1]).abs().max() <= END_TOL
    # Clip 0 is the job's own noise: the single job, batched beside another clip.
    single = denoise(bidirectional(planned, image_paths))
    assert torch.allclose(latents[0], single[0], atol=1e-4)
    # The other seed moves only the starting noise: every step's fresh noise is the job seed's, so the
    # clips differ, but far less than two jobs of different seeds (measured 0.006 against > 0.01).
    assert (latents[1] - latents[0]).abs().max() > 1e-3


def engine_job(image_paths, **fields) -> JobRequest:
    doc = {"seed": 3, "generation": dict(SIZE), "output": {"preview": "none"}, **fields}
    return JobRequest.model_validate(doc)


def test_twice_the_unet_calls_of_a_plain_job_and_the_manifest_says_so(registry, image_paths, tmp_path, unet_calls):
    images = ImageResolver(allow_paths=True)
    run_job(engine_job(image_paths, image=str(image_paths[1])), tmp_path / "plain", registry=registry, images=images)
    plain = unet_calls.count
    assert plain == SIZE["steps"]

    seen: list[Progress] = []
    job = engine_job(image_paths, keyframes=keys(image_paths), interpolation="bidirectional")
    outputs = run_job(job, tmp_path / "both", registry=registry, images=images, on_progress=seen.append)
    assert unet_calls.count - plain == 2 * plain
    steering = outputs.manifest["steering"]
    assert steering["interpolation"]["method"] == "bidirectional"
    assert steering["keyframes"]["interpolation"] == "bidirectional"
    assert outputs.manifest["request"]["interpolation"] == "bidirectional"
    # One progress step per bidirectional step.
    denoising = [p.step for p in seen if p.stage == "denoise"]
    assert denoising == list(range(SIZE["steps"] + 1))


def test_cancel_stops_within_one_bidirectional_step(registry, image_paths, tmp_path, unet_calls):
    seen: list[Progress] = []

    def cancel_after_two() -> bool:
        return any(p.stage == "denoise" and p.step == 2 for p in seen)

    job = engine_job(image_paths, keyframes=keys(image_paths), interpolation="bidirectional")
    with pytest.raises(JobCanceled):
        run_job(
            job,
            tmp_path,
            registry=registry,
            images=ImageResolver(allow_paths=True),
            on_progress=seen.append,
            should_cancel=cancel_after_two,
        )
    assert unet_calls.count == 2 * 2
