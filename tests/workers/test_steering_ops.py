"""Directions, AdaIN style and sweeps in the engine, on the tiny SVD."""

from pathlib import Path

import numpy as np
import pytest
import torch

from api_schemas import JobRequest
from steering.adain import channel_stats
from workers.directions import DirectionResolver, save_direction
from workers.engine import load_inputs, run_job
from workers.errors import JobInputError
from workers.images import ImageResolver
from workers.ops.style import StyleOp
from workers.pipeline import SteerableVideoPipeline, fits_in
from workers.plan import resolve_job
from workers.planning import plan_job_clips

SIZE = {"width": 64, "height": 64, "num_frames": 5, "steps": 4}
TOL = 1e-5
EMBED_DIM = 32  # the tiny CLIP's projection size
LATENT = (4, 8, 8)  # the tiny model's latents at 64 x 64


def job(image: Path, **fields) -> JobRequest:
    doc = {"seed": 5, "image": str(image), "generation": dict(SIZE), "output": {"raw": True, "preview": "none"}}
    doc.update(fields)
    return JobRequest.model_validate(doc)


def frames_of(request: JobRequest, registry, out: Path, **kwargs) -> np.ndarray:
    outputs = run_job(request, out, registry=registry, images=ImageResolver(allow_paths=True), **kwargs)
    return np.load(outputs.files["frames"])


def unit(n: int, seed: int) -> list[float]:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return (v / v.norm()).tolist()


@pytest.fixture(scope="module")
def plain(registry, image_paths, tmp_path_factory) -> np.ndarray:
    return frames_of(job(image_paths[0]), registry, tmp_path_factory.mktemp("plain"))


class UNetInputs:
    def __init__(self, unet: torch.nn.Module) -> None:
        self.calls: list[torch.Tensor] = []
        self.handle = unet.register_forward_pre_hook(lambda m, args: self.calls.append(args[0].detach().clone()))


@pytest.fixture
def unet_inputs(registry):
    recorder = UNetInputs(registry.get("tiny").pipeline.unet)
    yield recorder
    recorder.handle.remove()


# -- zero strength is a no-op ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"directions": [{"source": {"vector": unit(EMBED_DIM, 1)}, "space": "embedding", "strength": 0.0}]},
        {"directions": [{"source": {"vector": unit(4, 2)}, "space": "latent", "strength": 0.0}]},
        {"directions": [{"source": {"vector": unit(EMBED_DIM, 1)}, "strength": {"from": 0, "to": 0}}]},
        {"style": {"image": "IMG", "strength": 0.0}},
        {"sweep": {"target": "seed", "to": 77, "count": 1}},
        {"sweep": {"target": "motion_bucket_id", "to": 10, "count": 1}},
    ],
    ids=["embedding", "latent", "ramp", "style", "sweep-seed", "sweep-motion"],
)
def test_zero_strength_is_a_no_op(extra, registry, plain, image_paths, tmp_path):
    if "style" in extra:
        extra = {"style": {**extra["style"], "image": str(image_paths[3])}}
    frames = frames_of(job(image_paths[0], **extra), registry, tmp_path)
    frames = frames[0] if frames.ndim == 5 else frames
    assert np.abs(frames - plain).max() <= TOL


def test_directions_and_style_move_the_frames(registry, plain, image_paths, tmp_path):
    embedding = {"source": {"vector": unit(EMBED_DIM, 1)}, "strength": 3.0}
    latent = {"source": {"vector": unit(4, 2)}, "space": "latent", "strength": 2.0}
    for k, extra in enumerate(
        [
            {"directions": [embedding]},
            {"directions": [latent]},
            {"style": {"image": str(image_paths[3]), "strength": 1}},
        ]
    ):
        moved = frames_of(job(image_paths[0], **extra), registry, tmp_path / str(k))
        assert np.abs(moved - plain).max() > 1e-3, extra


# -- sweeps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sweep", "single"),
    [
        ({"target": "seed", "to": 77, "count": 3}, lambda u, s: {"variation": {"seed": 77, "strength": u}}),
        (
            {"target": "motion_bucket_id", "to": 27, "count": 3},
            lambda u, s: {"generation": {**SIZE, "motion_bucket_id": round(127 - 100 * u)}},
        ),
        (
            {"target": "direction", "to": 4.0, "count": 3, "direction": 0},
            lambda u, s: {"directions": [{"source": {"vector": unit(EMBED_DIM, 1)}, "strength": 4.0 * u}]},
        ),
    ],
    ids=["seed", "motion", "direction"],
)
def test_sweep_clip_k_equals_the_single_job(sweep, single, registry, image_paths, tmp_path):
    extra = (
        {"directions": [{"source": {"vector": unit(EMBED_DIM, 1)}, "strength": 0.0}]} if "direction" in sweep else {}
    )
    outputs = run_job(
        job(image_paths[0], sweep=sweep, **extra),
        tmp_path / "sweep",
        registry=registry,
        images=ImageResolver(allow_paths=True),
    )
    clips = np.load(outputs.files["frames"])
    assert clips.shape == (3, 5, 64, 64, 3)
    assert {f"clips/{k}" for k in range(3)} <= set(outputs.files)
    for k, u in enumerate([0.0, 0.5, 1.0]):
        alone = frames_of(job(image_paths[0], **single(u, sweep)), registry, tmp_path / f"single{k}")
        assert np.abs(clips[k] - alone).max() <= 1e-4, k
    assert np.abs(clips[0] - clips[2]).max() > 1e-3  # the path does move
    # An unset batch size is resolved (all clips at once on the CPU) and recorded, so a replay batches alike.
    assert outputs.manifest["request"]["sweep"]["batch_size"] == 3


def test_sweep_in_batches_of_two_equals_one_batch(registry, image_paths, tmp_path):
    sweep = {"target": "seed", "to": 9, "count": 3}
    one = frames_of(job(image_paths[0], sweep=sweep), registry, tmp_path / "a")
    two = frames_of(job(image_paths[0], sweep={**sweep, "batch_size": 2}), registry, tmp_path / "b")
    assert np.abs(one - two).max() <= 1e-4
    # An explicit batch size is kept as given.
    assert (
        resolve_job(job(image_paths[0], sweep={**sweep, "batch_size": 2}), registry.get("tiny")).job.sweep.batch_size
        == 2
    )


def test_clips_per_batch_fit_the_memory_they_are_given():
    gib, pipe = 2**30, SteerableVideoPipeline
    # A guided 25-frame 576x1024 clip in float16 plans ≈ 8.8 GiB of UNet activations (7.8 traced).
    per_clip = pipe.denoise_bytes_per_clip(25, 72 * 128, 2)
    assert 8.5 * gib < per_clip < 9.0 * gib
    assert fits_in(19 * gib, per_clip, 4, 0.8) == 1  # a 24 GB card after the weights
    assert fits_in(75 * gib, per_clip, 8, 0.8) == 6  # an 80 GB card
    assert fits_in(135 * gib, per_clip, 4, 0.8) == 4  # never more than the limit
    assert fits_in(1 * gib, per_clip, 4, 0.8) == 1  # at least one: too large fails as out of memory


def test_image_sweep_ends_at_each_image(registry, image_paths, tmp_path):
    clips = frames_of(
        job(image_paths[0], sweep={"target": "image", "to": str(image_paths[1]), "count": 2}), registry, tmp_path
    )
    start = frames_of(job(image_paths[0]), registry, tmp_path / "s")
    end = frames_of(job(image_paths[1]), registry, tmp_path / "e")
    assert np.abs(clips[0] - start).max() <= 1e-4
    assert np.abs(clips[1] - end).max() <= 1e-4


# -- windows ---------------------------------------------------------------------------------------


def test_latent_direction_changes_nothing_before_its_window(registry, unet_inputs, image_paths, tmp_path):
    steps = 6
    generation = {**SIZE, "steps": steps}
    frames_of(job(image_paths[0], generation=generation), registry, tmp_path / "a")
    plain_calls, unet_inputs.calls = unet_inputs.calls, []
    direction = {"source": {"vector": unit(4 * 8 * 8, 3)}, "space": "latent", "strength": 5.0, "steps": [0.5, 1.0]}
    frames_of(job(image_paths[0], generation=generation, directions=[direction]), registry, tmp_path / "b")
    steered_calls = unet_inputs.calls

    # Steps 0..2 lie before the window; the edit after step 3 is first seen by the UNet at step 4.
    for i in range(4):
        assert torch.equal(plain_calls[i], steered_calls[i]), i
    assert not torch.allclose(plain_calls[4], steered_calls[4])


def test_style_brings_channel_statistics_to_the_reference(registry, image_paths):
    pipe = registry.get("tiny").pipeline
    plan = resolve_job(
        job(image_paths[0], style={"image": str(image_paths[3]), "strength": 1.0, "steps": [0.5, 1.0]}),
        registry.get("tiny"),
    )
    inputs, _ = load_inputs(plan.job, ImageResolver(allow_paths=True))
    planned = plan_job_clips(pipe, plan, inputs)
    conditioning, noise, steering = planned.stack(planned.clips)
    (style,) = [op.edit for op in planned.operations if isinstance(op, StyleOp)]
    seen: list[torch.Tensor] = []

    def record(p, i, t, tensors):
        tensors["latents"] = steering(p, i, tensors["latents"])
        seen.append(tensors["latents"].clone())
        return tensors

    pipe(conditioning, noise, 4, callback_on_step_end=record, output_type="latent")
    mean, std = channel_stats(seen[-1])
    # AdaIN sets the statistics exactly up to float32 rounding and the 1e-5 variance epsilon: at the
    # last step (sigma = 0) the latents' per-channel stats are the reference's.
    assert torch.allclose(mean[0], style.mean.expand_as(mean[0]), atol=1e-4)
    assert torch.allclose(std[0], style.std.expand_as(std[0]), atol=1e-4)

    # Outside the window (steps 0 and 1 of 4) the latents are those of the plain job.
    plain = plan_job_clips(pipe, resolve_job(job(image_paths[0]), registry.get("tiny")), inputs)
    plain_conditioning, plain_noise, _ = plain.stack(plain.clips)
    plain_seen: list[torch.Tensor] = []
    pipe(
        plain_conditioning,
        plain_noise,
        4,
        callback_on_step_end=lambda p, i, t, x: plain_seen.append(x["latents"].clone()) or x,
        output_type="latent",
    )
    assert torch.equal(seen[0], plain_seen[0]) and torch.equal(seen[1], plain_seen[1])
    assert not torch.allclose(seen[2], plain_seen[2])


# -- sources ---------------------------------------------------------------------------------------


def test_stored_and_file_directions_match_inline(registry, image_paths, tmp_path):
    vector = torch.tensor(unit(EMBED_DIM, 4))
    path = save_direction(tmp_path / "dirs", "dir_test", vector * 3.0, {"method": "inline"})
    inline = frames_of(
        job(image_paths[0], directions=[{"source": {"vector": vector.tolist()}, "strength": 2.0}]),
        registry,
        tmp_path / "a",
    )
    by_id = frames_of(
        job(image_paths[0], directions=[{"source": {"id": "dir_test"}, "strength": 2.0}]),
        registry,
        tmp_path / "b",
        directions=DirectionResolver.from_folder(tmp_path / "dirs"),
    )
    by_path = frames_of(
        job(image_paths[0], directions=[{"source": {"path": str(path)}, "strength": 2.0}]),
        registry,
        tmp_path / "c",
        directions=DirectionResolver(allow_paths=True),
    )
    assert np.abs(inline - by_id).max() <= TOL
    assert np.abs(inline - by_path).max() <= TOL


@pytest.mark.parametrize(
    ("direction", "field", "rule"),
    [
        ({"source": {"vector": [1.0, 0.0, 0.0]}}, "directions[0].source", "has 32 entries, got 3"),
        ({"source": {"vector": [1.0] * 5}, "space": "latent"}, "directions[0].source", "4 (per channel)"),
        ({"source": {"id": "dir_missing"}}, "directions[0].source.id", "unknown direction"),
        ({"source": {"vector": [0.0] * 32}}, "directions[0].source", "zero"),
        (
            {"source": {"vector": unit(EMBED_DIM, 1)}, "preserve": [{"vector": unit(EMBED_DIM, 1)}]},
            "directions[0].preserve",
            "span",
        ),
    ],
)
def test_bad_directions_fail_naming_the_field(direction, field, rule, registry, image_paths, tmp_path):
    with pytest.raises(JobInputError) as info:
        run_job(
            job(image_paths[0], directions=[direction]),
            tmp_path,
            registry=registry,
            images=ImageResolver(allow_paths=True),
            directions=DirectionResolver.from_folder(tmp_path / "none"),
        )
    assert info.value.field == field
    assert rule in info.value.detail


def test_preserve_keeps_the_preserved_score(registry, image_paths):
    """The edited embedding's score along a preserved direction does not move."""
    from workers.directions import resolve_directions

    plan = resolve_job(
        job(
            image_paths[0],
            directions=[
                {
                    "source": {"vector": unit(EMBED_DIM, 1)},
                    "strength": 3.0,
                    "preserve": [{"vector": unit(EMBED_DIM, 2)}],
                }
            ],
        ),
        registry.get("tiny"),
    )
    assert (plan.embedding_dim, plan.latent_shape) == (EMBED_DIM, LATENT)
    (resolved,) = resolve_directions(plan, DirectionResolver())
    keep = torch.tensor(unit(EMBED_DIM, 2))
    assert abs(float(resolved.vector @ keep)) <= 1e-6
    assert float(resolved.vector @ torch.tensor(unit(EMBED_DIM, 1))) > 0.5


def test_a_direction_too_large_for_float32_is_an_input_error_that_says_so():
    from workers.directions import fit_space

    huge = torch.full((32,), 1e308, dtype=torch.float64)  # finite in float64, infinite in float32
    with pytest.raises(JobInputError, match=r"in float32 .*\|x\| < 3\.4e38") as raised:
        fit_space(huge, "embedding", "directions[0].source.vector", 32, (4, 8, 8))
    assert raised.value.field == "directions[0].source.vector"
    assert fit_space(torch.ones(32, dtype=torch.float64), "embedding", "d", 32, (4, 8, 8)).shape == (32,)
