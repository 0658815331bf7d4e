"""A supervised direction is the field ∇score(z)/‖∇score(z)‖: a job evaluates its stored predictor at
each frame's own embedding, not one vector frozen at the training mean (DESIGN.md §5)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from api_schemas import JobRequest
from steering.discovery import attribute_predictor
from workers.directions import DirectionResolver, ResolvedDirection, frame_directions, save_direction
from workers.engine import run_job
from workers.errors import JobInputError
from workers.images import ImageResolver

SIZE = {"width": 64, "height": 64, "num_frames": 5, "steps": 2, "guidance": {"min": 1.0, "max": 1.0}}
TOL = 1e-5


# -- the per-frame field, against closed forms -----------------------------------------------------


class Bowl(nn.Module):
    """score(z) = ‖z − c‖²: ∇score = 2(z − c), so the direction at z is (z − c)/‖z − c‖."""

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("c", c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return ((z - self.c) ** 2).sum(-1)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def resolved(predictor: nn.Module, at_mean: torch.Tensor, preserve: torch.Tensor | None = None) -> ResolvedDirection:
    return ResolvedDirection(
        index=0, space="embedding", vector=at_mean, alpha=torch.ones(1, 5), predictor=predictor, preserve=preserve
    )


def test_each_frame_gets_the_normalised_gradient_at_its_own_embedding():
    c, z = randn(16, seed=0), randn(5, 16, seed=1) * 3
    z64 = z.double()
    want = (z64 - c.double()) / (z64 - c.double()).norm(dim=1, keepdim=True)
    frozen = want.mean(dim=0)  # any single vector: here the field at the frames' mean, normalised
    frozen = frozen / frozen.norm()

    got = frame_directions(resolved(Bowl(c), frozen.float()), z)

    assert got.shape == (5, 16)
    assert torch.allclose(got.double(), want, atol=1e-6)
    # The frames point different ways, and one frozen vector is not the answer.
    cosines = want @ want.T
    assert float(cosines[~torch.eye(5, dtype=torch.bool)].max()) < 0.9
    assert (got.double() - frozen).norm(dim=1).min() > 0.1


def test_preserve_is_projected_out_of_each_frame_and_renormalised():
    c, z, keep = randn(16, seed=0), randn(5, 16, seed=1) * 3, randn(2, 16, seed=2)
    q, _ = torch.linalg.qr(keep.double().T)  # (16, 2) orthonormal basis of what is preserved
    gradient = z.double() - c.double()
    remainder = gradient - (gradient @ q) @ q.T
    want = remainder / remainder.norm(dim=1, keepdim=True)

    got = frame_directions(resolved(Bowl(c), torch.ones(16), preserve=keep), z)

    assert torch.allclose(got.double(), want, atol=1e-6)
    assert float((got.double() @ keep.double().T).abs().max()) < 1e-6


def test_a_zero_gradient_at_a_frame_is_an_input_error():
    c = randn(16, seed=0)
    z = torch.stack([c, c + 1.0])  # the bowl is flat at its bottom
    with pytest.raises(JobInputError) as raised:
        frame_directions(resolved(Bowl(c), torch.ones(16)), z)
    assert raised.value.field == "directions[0].source" and "gradient is zero" in raised.value.detail


# -- in a job on the tiny SVD ----------------------------------------------------------------------


class ContextSpy:
    """What one spatial cross-attention's value projection receives: each frame's tokens (F, T, D)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.context: list[torch.Tensor] = []
        spatial = next(
            m
            for name, m in unet.named_modules()
            if name.endswith("attn2") and "temporal" not in name and "down_blocks" in name
        )
        self.handle = spatial.to_v.register_forward_pre_hook(lambda m, args: self.context.append(args[0].clone()))


@pytest.fixture
def spy(registry):
    recorder = ContextSpy(registry.get("tiny").pipeline.unet)
    yield recorder
    recorder.handle.remove()


class HandSet:
    """An attribute MLP with hand-set weights (H = 2) and its gradient in closed form:
    ∇score(z) = W₁ᵀ (w₂ ⊙ (1 − tanh²(W₁(z − c)/s + b₁))) / s."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        # Centred between the keyframes, one row along b − a: the frames of a morph sit at different
        # slopes of tanh, so the gradient turns from frame to frame.
        a64, b64 = a.double(), b.double()
        axis = (b64 - a64) / (b64 - a64).norm()
        other = randn(a.shape[0], seed=5).double()
        other = other - (other @ axis) * axis
        self.center = (a64 + b64) / 2
        self.scale = float((b64 - a64).norm()) / 3
        self.rows = torch.stack([axis, other / other.norm()])
        self.bias = torch.tensor([0.8, -0.3], dtype=torch.float64)
        self.w2 = torch.tensor([1.5, 0.7], dtype=torch.float64)

    def module(self) -> nn.Module:
        return attribute_predictor(
            {
                "center": self.center.float(),
                "scale": torch.tensor(self.scale),
                "hidden.weight": self.rows.float(),
                "hidden.bias": self.bias.float(),
                "out.weight": self.w2.float()[None],
                "out.bias": torch.tensor([0.25]),
            }
        )

    def direction(self, z: torch.Tensor) -> torch.Tensor:
        # the float32 weights the stored file holds, in float64 arithmetic
        c, rows, bias, w2 = (t.float().double() for t in (self.center, self.rows, self.bias, self.w2))
        s = float(torch.tensor(self.scale, dtype=torch.float32))
        pre = ((z.double() - c) / s) @ rows.T + bias
        grad = ((w2 * (1 - torch.tanh(pre) ** 2)) @ rows) / s
        return grad / grad.norm(dim=-1, keepdim=True)


def keyframe_job(image_paths, directions: list) -> JobRequest:
    keys = [{"image": str(image_paths[1]), "at": 0.0}, {"image": str(image_paths[2]), "at": 1.0}]
    return JobRequest.model_validate(
        {
            "seed": 7,
            "keyframes": keys,
            "interpolation": "slerp",
            "generation": SIZE,
            "output": {"raw": True, "preview": "none"},
            "directions": directions,
        }
    )


def run(request: JobRequest, registry, out: Path, folder: Path) -> list:
    outputs = run_job(
        request,
        out,
        registry=registry,
        images=ImageResolver(allow_paths=True),
        directions=DirectionResolver.from_folder(folder),
    )
    steering = json.loads(outputs.files["manifest"].read_text())["steering"]
    return steering["directions"]["directions"] if "directions" in steering else []


def test_a_stored_predictor_moves_each_frame_along_its_own_gradient(registry, spy, image_paths, tmp_path):
    # 1. each frame's embedding before the direction: the keyframe morph alone
    run(keyframe_job(image_paths, []), registry, tmp_path / "plain", tmp_path / "dirs")
    z = spy.context[0][:, 0].double()  # (F, D)
    spy.context.clear()

    # 2. the predictor, stored with its gradient at the morph's mean as the file's `direction`
    hand = HandSet(z[0], z[-1])
    frozen = hand.direction(z.mean(dim=0))
    save_direction(tmp_path / "dirs", "dir_field", frozen.float(), {"method": "supervised"}, hand.module())

    strength = {"from": 1.0, "to": 3.0, "over": "frames"}
    steered = keyframe_job(image_paths, [{"source": {"id": "dir_field"}, "strength": strength}])
    described = run(steered, registry, tmp_path / "steered", tmp_path / "dirs")
    received = spy.context[0][:, 0].double()

    # 3. what each frame's cross-attention received: z_f + α_f·d_f with d_f the closed-form gradient at z_f
    alpha = torch.linspace(1.0, 3.0, 5, dtype=torch.float64)[:, None]
    want = z + alpha * hand.direction(z)
    assert torch.allclose(received, want, atol=TOL)
    # The frozen vector is another answer, which the check above tells apart.
    degenerate = z + alpha * frozen
    assert float((received - degenerate).norm(dim=1).max()) > 0.1
    assert float(hand.direction(z[0]) @ hand.direction(z[-1])) < 0.95

    (entry,) = described
    assert entry["evaluated"] == "gradient_per_frame"
    assert entry["sha256"].startswith("sha256:") and entry["source"] == "id"


def test_the_field_is_read_where_the_earlier_directions_left_each_frame(registry, spy, image_paths, tmp_path):
    run(keyframe_job(image_paths, []), registry, tmp_path / "plain", tmp_path / "dirs")
    z = spy.context[0][:, 0].double()
    spy.context.clear()
    hand = HandSet(z[0], z[-1])
    save_direction(tmp_path / "dirs", "dir_field", hand.direction(z.mean(dim=0)).float(), {}, hand.module())
    first = randn(z.shape[1], seed=9).double()
    first = first / first.norm()

    directions = [
        {"source": {"vector": first.tolist()}, "strength": 2.0},  # a fixed vector, then the field
        {"source": {"id": "dir_field"}, "strength": 1.5},
    ]
    described = run(keyframe_job(image_paths, directions), registry, tmp_path / "steered", tmp_path / "dirs")
    received = spy.context[0][:, 0].double()

    moved = z + 2.0 * first
    assert torch.allclose(received, moved + 1.5 * hand.direction(moved), atol=TOL)
    assert float((received - (moved + 1.5 * hand.direction(z))).norm(dim=1).max()) > 1e-3
    assert [d["evaluated"] for d in described] == ["fixed", "gradient_per_frame"]


def test_a_linear_probe_and_a_latent_use_stay_one_fixed_vector(registry, spy, image_paths, tmp_path):
    run(keyframe_job(image_paths, []), registry, tmp_path / "plain", tmp_path / "dirs")
    z = spy.context[0][:, 0].double()
    spy.context.clear()
    probe = randn(z.shape[1], seed=3).double()
    probe = probe / probe.norm()
    save_direction(tmp_path / "dirs", "dir_probe", probe.float(), {"method": "probe"})

    described = run(
        keyframe_job(image_paths, [{"source": {"id": "dir_probe"}, "strength": 2.0}]),
        registry,
        tmp_path / "probe",
        tmp_path / "dirs",
    )
    assert torch.allclose(spy.context[0][:, 0].double(), z + 2.0 * probe, atol=TOL)
    assert described[0]["evaluated"] == "fixed"
