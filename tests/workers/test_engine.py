"""The steerable engine on the tiny SVD: parity with diffusers, zero-strength no-ops, and effects."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline
from safetensors.torch import save_file

from api_schemas import JobRequest
from workers.corpus import EmbeddingCorpus
from workers.engine import Progress, run_job
from workers.errors import JobCanceled, JobInputError
from workers.images import ImageResolver

SIZE = {"width": 64, "height": 64, "num_frames": 5, "steps": 3}
TOL = 1e-5


def job(**fields) -> JobRequest:
    doc = {"seed": 7, "generation": dict(SIZE), "output": {"raw": True, "preview": "none"}}
    for key, value in fields.items():
        if key == "generation":
            doc["generation"] = {**doc["generation"], **value}
        else:
            doc[key] = value
    return JobRequest.model_validate(doc)


def frames_of(request: JobRequest, registry, out: Path, **kwargs) -> np.ndarray:
    outputs = run_job(request, out, registry=registry, images=ImageResolver(allow_paths=True), **kwargs)
    return np.load(outputs.files["frames"])


@pytest.fixture(scope="module")
def stock(tiny_model_dir: Path) -> Callable[[str], StableVideoDiffusionPipeline]:
    """diffusers' own pipeline on a model's weights, in float32 (the toy's are stored in float16)."""
    from workers.toy import TOY_FOLDER

    loaded: dict[str, StableVideoDiffusionPipeline] = {}

    def get(model: str) -> StableVideoDiffusionPipeline:
        if model not in loaded:
            folder = {"tiny": tiny_model_dir, "toy": TOY_FOLDER}[model]
            loaded[model] = StableVideoDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
            loaded[model].set_progress_bar_config(disable=True)
        return loaded[model]

    return get


class UNetSpy:
    """Records what the UNet and one spatial cross-attention's value projection receive on each call."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.inputs: list[torch.Tensor] = []
        self.context: list[torch.Tensor] = []
        spatial = next(
            m
            for name, m in unet.named_modules()
            if name.endswith("attn2") and "temporal" not in name and "down_blocks" in name
        )
        self.handles = [
            unet.register_forward_pre_hook(self._unet, with_kwargs=True),
            spatial.to_v.register_forward_pre_hook(self._to_v),
        ]

    def _unet(self, module, args, kwargs):
        self.inputs.append(args[0].detach().clone())

    def _to_v(self, module, args):
        self.context.append(args[0].detach().clone())

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.fixture
def spy(registry):
    unet = registry.get("tiny").pipeline.unet
    recorder = UNetSpy(unet)
    yield recorder
    recorder.close()


# -- parity with diffusers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "guidance",
    [
        {"min": 1.0, "max": 3.0},  # diffusers' default ramp: guidance on
        {"min": 1.0, "max": 1.0},  # guidance off: one UNet branch
        {"min": 2.0, "max": 2.5},
    ],
)
@pytest.mark.parametrize("model", ["tiny", "toy"])  # random weights, and trained ones
def test_plain_job_equals_diffusers(model, guidance, registry, stock, image_paths, tmp_path):
    generation = {**SIZE, "guidance": guidance, "fps": 9, "motion_bucket_id": 60, "noise_aug_strength": 0.05}
    ours = frames_of(job(model=model, image=str(image_paths[0]), generation=generation), registry, tmp_path)

    theirs = stock(model)(
        PIL.Image.open(image_paths[0]).convert("RGB"),
        height=64,
        width=64,
        num_frames=5,
        num_inference_steps=3,
        min_guidance_scale=guidance["min"],
        max_guidance_scale=guidance["max"],
        fps=9,
        motion_bucket_id=60,
        noise_aug_strength=0.05,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="np",
    ).frames[0]

    assert ours.shape == theirs.shape == (5, 64, 64, 3)
    assert ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= TOL
    # The comparison can fail: another seed gives other frames.
    other = frames_of(
        job(model=model, image=str(image_paths[0]), generation=generation, seed=8), registry, tmp_path / "o"
    )
    assert np.abs(other - theirs).max() > 1e-3


# -- zero strength is a no-op ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(registry, image_paths, tmp_path_factory) -> np.ndarray:
    return frames_of(job(image=str(image_paths[0])), registry, tmp_path_factory.mktemp("plain"))


def test_variation_strength_zero_is_a_no_op(registry, plain, image_paths, tmp_path):
    varied = frames_of(job(image=str(image_paths[0]), variation={"seed": 99, "strength": 0.0}), registry, tmp_path)
    assert np.abs(varied - plain).max() <= TOL
    moved = frames_of(job(image=str(image_paths[0]), variation={"seed": 99, "strength": 0.5}), registry, tmp_path / "m")
    assert np.abs(moved - plain).max() > 1e-3


def test_references_of_weight_zero_are_a_no_op(registry, plain, image_paths, tmp_path):
    refs = [{"image": str(image_paths[1]), "weight": 0.0}, {"image": str(image_paths[2]), "weight": 0.0}]
    anchored = frames_of(job(image=str(image_paths[0]), references=refs), registry, tmp_path)
    assert np.abs(anchored - plain).max() <= TOL
    refs[0]["weight"] = 1.0
    moved = frames_of(job(image=str(image_paths[0]), references=refs), registry, tmp_path / "m")
    assert np.abs(moved - plain).max() > 1e-4


@pytest.mark.parametrize("interpolation", ["linear", "slerp", "geodesic"])
def test_identical_keyframes_equal_the_plain_job(interpolation, registry, plain, image_paths, tmp_path):
    keys = [{"image": str(image_paths[0]), "at": 0.0}, {"image": str(image_paths[0]), "at": 1.0}]
    morph = frames_of(job(keyframes=keys, interpolation=interpolation), registry, tmp_path)
    assert np.abs(morph - plain).max() <= TOL


# -- effects ---------------------------------------------------------------------------------------


def test_keyframe_morph_feeds_each_frame_its_interpolated_conditioning(registry, spy, image_paths, tmp_path):
    from steering.conditioning import frame_positions
    from steering.interpolate import slerp

    keys = [{"image": str(image_paths[1]), "at": 0.0}, {"image": str(image_paths[2]), "at": 1.0}]
    request = job(keyframes=keys, interpolation="slerp", generation={"guidance": {"min": 1.0, "max": 1.0}})
    frames_of(request, registry, tmp_path)

    # What the keyframes encode to, with the job's augmentation noise (drawn first from its seed).
    pipe = registry.get("tiny").pipeline
    noise = pipe.draw_noise(torch.Generator("cpu").manual_seed(7), 5, 64, 64)
    a, b = (
        pipe.encode_image(PIL.Image.open(image_paths[i]).convert("RGB"), 64, 64, noise.augmentation, 0.02)
        for i in (1, 2)
    )
    t = frame_positions(5).float()
    want_latents = slerp(a.latent, b.latent, t)  # (F, C, h, w)
    want_embeddings = slerp(a.embedding, b.embedding, t)  # (F, D)

    unet_input = spy.inputs[0]  # (1, F, 8, h, w): noisy latents, then the image latents
    assert torch.allclose(unet_input[0, :, 4:], want_latents, atol=1e-6)
    context = spy.context[0]  # (F, 1, D): what the cross-attention of each frame attends to
    assert context.shape == (5, 1, want_embeddings.shape[-1])
    assert torch.allclose(context[:, 0], want_embeddings, atol=1e-6)
    # Frames differ from each other: the first is keyframe a, the last keyframe b.
    assert torch.allclose(context[0, 0], a.embedding, atol=1e-6)
    assert torch.allclose(context[-1, 0], b.embedding, atol=1e-6)
    assert not torch.allclose(context[1, 0], context[3, 0], atol=1e-4)


def test_negative_image_changes_the_unconditional_branch_only(registry, spy, image_paths, tmp_path):
    frames_of(job(image=str(image_paths[0])), registry, tmp_path / "a")
    plain_input, plain_context = spy.inputs[0], spy.context[0]
    spy.inputs.clear()
    spy.context.clear()
    frames_of(job(image=str(image_paths[0]), negative_image=str(image_paths[3])), registry, tmp_path / "b")
    neg_input, neg_context = spy.inputs[0], spy.context[0]

    # Under guidance the batch is [negative, positive]; the first step's noisy latents are equal.
    assert torch.equal(neg_input[1], plain_input[1])
    assert torch.equal(neg_context[5:], plain_context[5:])
    assert not torch.allclose(neg_input[0, :, 4:], plain_input[0, :, 4:])
    assert not torch.allclose(neg_context[:5], plain_context[:5])
    assert torch.count_nonzero(plain_context[:5]) == 0  # SVD's own unconditional branch is zeros


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("linear", [1.0, 1.5, 2.0, 2.5, 3.0]),
        ("triangle", [1.0, 2.0, 3.0, 2.0, 1.0]),
        ("constant", [3.0, 3.0, 3.0, 3.0, 3.0]),
    ],
)
def test_guidance_shapes_give_their_per_frame_scales(shape, expected, registry, image_paths, tmp_path):
    seen: list[torch.Tensor] = []
    pipe = registry.get("tiny").pipeline

    def record(progress: Progress) -> None:
        if progress.stage == "denoise" and progress.step == 1:
            seen.append(pipe.guidance_scale.clone())

    request = job(image=str(image_paths[0]), generation={"guidance": {"min": 1.0, "max": 3.0, "shape": shape}})
    run_job(request, tmp_path, registry=registry, images=ImageResolver(allow_paths=True), on_progress=record)
    assert torch.allclose(seen[0][0], torch.tensor(expected), atol=1e-6)


def test_cancel_stops_within_one_step(registry, spy, image_paths, tmp_path):
    state = {"cancel": False}

    def on_progress(progress: Progress) -> None:
        if progress.stage == "denoise" and progress.step == 2:
            state["cancel"] = True

    request = job(image=str(image_paths[0]), generation={"steps": 10})
    with pytest.raises(JobCanceled):
        run_job(
            request,
            tmp_path,
            registry=registry,
            images=ImageResolver(allow_paths=True),
            on_progress=on_progress,
            should_cancel=lambda: state["cancel"],
        )
    assert len(spy.inputs) == 2  # the flag rose after step 2; no third UNet call was made
    assert not (tmp_path / "video.mp4").exists()


def test_geodesic_keyframes_report_energy_at_most_slerp(registry, image_paths, tmp_path, monkeypatch):
    embeddings = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))  # the tiny CLIP's width
    save_file({"embeddings": embeddings}, tmp_path / "corpus.safetensors")
    monkeypatch.setattr(
        registry.get("tiny").pipeline, "geodesic_corpus", EmbeddingCorpus(tmp_path / "corpus.safetensors")
    )
    keys = [{"image": str(image_paths[i]), "at": at} for i, at in ((1, 0.0), (2, 0.5), (3, 1.0))]
    request = job(keyframes=keys, interpolation="geodesic", references=[{"image": str(image_paths[0]), "weight": 0.5}])
    outputs = run_job(request, tmp_path / "out", registry=registry, images=ImageResolver(allow_paths=True))
    report = outputs.manifest["interpolation"]["embedding"]
    assert report["method"] == "geodesic" and report["interpolation_used"] == "geodesic"
    assert report["energy"] <= report["slerp_energy"] + 1e-9
    assert outputs.manifest["interpolation"]["image_latent"]["method"] == "slerp"
    # the result's metrics (the job resource's) say which path it took too
    assert outputs.metrics["interpolation"] == {
        "interpolation_used": "geodesic",
        "corpus": {"source": "model", "images": 64},
    }


def test_a_geodesic_without_a_corpus_says_slerp_in_its_metrics_too(registry, image_paths, tmp_path):
    keys = [{"image": str(image_paths[i]), "at": at} for i, at in ((1, 0.0), (2, 1.0))]
    outputs = run_job(
        job(keyframes=keys, interpolation="geodesic"),
        tmp_path,
        registry=registry,
        images=ImageResolver(allow_paths=True),
    )
    used = outputs.metrics["interpolation"]
    assert used["interpolation_used"] == "slerp" and used["corpus"] == {"source": None, "images": 0}
    assert "corpus" in used["fallback"]  # the reason
    plain = run_job(
        job(image=str(image_paths[0])), tmp_path / "p", registry=registry, images=ImageResolver(allow_paths=True)
    )
    assert "interpolation" not in plain.metrics


def test_unreadable_image_fails_naming_the_field(registry, image_paths, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(image_paths[0].read_bytes()[:40])
    keys = [{"image": str(image_paths[0]), "at": 0.0}, {"image": str(broken), "at": 1.0}]
    with pytest.raises(JobInputError) as info:
        run_job(job(keyframes=keys), tmp_path / "o", registry=registry, images=ImageResolver(allow_paths=True))
    assert info.value.field == "keyframes[1].image"


def test_warm_up_job_runs_a_whole_job_and_leaves_nothing(registry, tmp_path, monkeypatch):
    import tempfile

    from workers.engine import warm_up_job

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seconds = warm_up_job(registry, "tiny")
    assert seconds > 0
    assert list(tmp_path.iterdir()) == []
