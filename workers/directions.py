"""Semantic directions: files on disk, and turning a job's `directions` into per-frame, per-step edits.

A direction is stored as `<id>.safetensors` (tensor `direction`, float32; a supervised fit adds its
attribute predictor, `workers.direction_predictor`) beside `<id>.json` (method, space, dimension, model
it came from, fit statistics, leakage report). In a job z' = z + α·d, with d made after its `preserve`
directions are projected out:

- embedding space: d is unit length, so `strength` is a distance in the CLIP embedding space. A file
  holding a predictor is a field, evaluated per frame: d_f = ∇score(z_f)/‖∇score(z_f)‖ at frame f's
  embedding as this direction finds it (interpolated keyframes, moved by the job's earlier
  directions), then `preserve` projected out and renormalised; every other direction is one vector.
- latent space: d has a root-mean-square entry of 1 (unit norm × √numel), so `strength` is in the
  latents' own per-element units at every resolution: α moves a frame's latents by α RMS in total.
  A per-channel direction (C entries, broadcast over h×w) follows the same rule, so it moves the
  latents as much as the same pattern written out at full size.
"""

import copy
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save
from torch import nn

from api_schemas import DirectionSource, Ramp
from steering import schedules
from steering.directions import DependentDirectionError, normalize, project_out
from steering.discovery import predictor_direction
from steering.schedules import frame_window, step_window
from workers.direction_predictor import file_metadata, load_predictor, predictor_entries
from workers.errors import JobInputError
from workers.plan import JobPlan

DIRECTION_ID = re.compile(r"^dir_[A-Za-z0-9_-]{1,64}$")


def save_direction(
    folder: Path, direction_id: str, vector: torch.Tensor, meta: dict[str, Any], predictor: nn.Module | None = None
) -> Path:
    """Write `<id>.safetensors` (with `predictor` when given) and `<id>.json` into `folder`; returns the
    safetensors path."""
    if not DIRECTION_ID.match(direction_id):
        raise ValueError(f"a direction id must match {DIRECTION_ID.pattern}, got {direction_id!r}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{direction_id}.safetensors"
    path.write_bytes(direction_bytes(vector, predictor))
    (folder / f"{direction_id}.json").write_text(json.dumps({"id": direction_id, **meta}, indent=2) + "\n")
    return path


def direction_bytes(vector: torch.Tensor, predictor: nn.Module | None = None) -> bytes:
    """The safetensors file of a direction: `direction`, plus its attribute predictor's tensors and
    metadata when it has one (`workers.direction_predictor`)."""
    tensors = {"direction": vector.detach().to(torch.float32).contiguous().cpu()}
    if predictor is None:
        return save(tensors)
    extra, metadata = predictor_entries(predictor)
    return save({**tensors, **extra}, metadata=metadata)


def read_direction(data: bytes, where: str) -> torch.Tensor:
    return read_direction_file(data, where)[0]


def read_direction_file(data: bytes, where: str) -> tuple[torch.Tensor, nn.Module | None]:
    """The file's `direction` tensor and the predictor it stores (None for a plain vector)."""
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise JobInputError(where, f"not a readable safetensors direction file ({exc})") from exc
    if "direction" not in tensors:
        raise JobInputError(where, "the direction file has no tensor named `direction`")
    vector = tensors["direction"]
    return vector, load_predictor(tensors, file_metadata(data), vector.numel(), where)


class DirectionResolver:
    """Turns a `source` into a vector: inline, a local file (CLI only), a stored id, or two texts on
    the job's model (`text`, bound with `with_text`).

    `fetch` maps a direction id to its safetensors bytes (a folder in the CLI, storage in the workers).
    """

    def __init__(
        self,
        *,
        fetch: Callable[[str], bytes] | None = None,
        allow_paths: bool = False,
        text: Callable[[str, str], torch.Tensor] | None = None,
    ) -> None:
        self.fetch = fetch
        self.allow_paths = allow_paths
        self.text = text  # (text, from_text) → unit direction on the job's model (`workers.text.text_direction`)
        self._texts: dict[tuple[str, str], torch.Tensor] = {}  # (text, from_text) → the direction it gave
        self._digests: dict[tuple[str, str], str] = {}  # ("id" | "path", name) → sha256 of the bytes read
        self._predictors: dict[tuple[str, str], nn.Module | None] = {}  # the same keys → predictor stored

    def digest(self, source: DirectionSource) -> str:
        """`sha256:<hex>` of what `source` was read from: the stored file (an id or a path, read by
        `vector` first) or the inline vector's float32 values, for the manifest; for a `text` source,
        the float32 values of the direction its texts gave."""
        if source.text is not None:
            return direction_digest(self.text_vector(source, "directions"))
        if source.vector is not None:
            return direction_digest(torch.tensor(source.vector, dtype=torch.float32))
        key = ("id", source.id) if source.id is not None else ("path", str(source.path))
        if key not in self._digests:  # not needed by the job (a strength of 0): read it now
            self.vector(source, "directions")
        return self._digests[key]  # type: ignore[index]

    @classmethod
    def from_folder(cls, folder: Path, allow_paths: bool = True) -> "DirectionResolver":
        def fetch(direction_id: str) -> bytes:
            path = folder / f"{direction_id}.safetensors"
            if not path.is_file():
                raise KeyError(direction_id)
            return path.read_bytes()

        return cls(fetch=fetch, allow_paths=allow_paths)

    def with_text(self, text: Callable[[str, str], torch.Tensor] | None) -> "DirectionResolver":
        """This resolver, reading `text` sources with `text(text, from_text)`: the model a job runs on
        (`workers.text.text_direction`), bound once its model is loaded."""
        bound = copy.copy(self)
        bound.text, bound._texts = text, {}
        return bound

    def text_vector(self, source: DirectionSource, where: str) -> torch.Tensor:
        """d = normalize(E_text(text) − E_text(from_text)), `from_text` "" when unset; once per pair."""
        assert source.text is not None
        key = (source.text, source.from_text or "")
        if key not in self._texts:
            if self.text is None:
                raise JobInputError(
                    f"{where}.text", "this model has no text encoder for text directions (text_encoder_missing)"
                )
            try:
                self._texts[key] = self.text(*key)
            except JobInputError as exc:  # `text` or `from_text`, under the source that holds them
                raise JobInputError(f"{where}.{exc.field}", exc.detail) from exc
        return self._texts[key]

    def vector(self, source: DirectionSource, where: str) -> torch.Tensor:
        if source.vector is not None:
            return torch.tensor(source.vector, dtype=torch.float32)
        if source.text is not None:
            return self.text_vector(source, where)
        if source.path is not None:
            if not self.allow_paths:
                raise JobInputError(f"{where}.path", "local direction files are accepted by the CLI only")
            path = Path(source.path).expanduser()
            if not path.is_file():
                raise JobInputError(f"{where}.path", f"no such file: {source.path}")
            data = path.read_bytes()
            self._digests[("path", str(source.path))] = bytes_digest(data)
            return self._read(("path", str(source.path)), data, f"{where}.path")
        assert source.id is not None
        if self.fetch is None:
            raise JobInputError(f"{where}.id", "stored directions need a direction store")
        try:
            data = self.fetch(source.id)
        except KeyError as exc:
            raise JobInputError(f"{where}.id", f"unknown direction {source.id!r}") from exc
        self._digests[("id", source.id)] = bytes_digest(data)
        return self._read(("id", source.id), data, f"{where}.id")

    def _read(self, key: tuple[str, str], data: bytes, where: str) -> torch.Tensor:
        vector, self._predictors[key] = read_direction_file(data, where)
        return vector

    def predictor(self, source: DirectionSource, where: str) -> nn.Module | None:
        """The attribute predictor stored with `source`'s file (read by `vector` first), or None: inline
        vectors and files without one are fixed vectors."""
        if source.id is None and source.path is None:
            return None
        key = ("id", source.id) if source.id is not None else ("path", str(source.path))
        if key not in self._predictors:
            self.vector(source, where)
        return self._predictors[key]


def bytes_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def direction_digest(vector: torch.Tensor) -> str:
    """sha256 of a direction's float32 values, in order (little-endian)."""
    return bytes_digest(vector.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes())


@dataclass(frozen=True)
class ResolvedDirection:
    """A job direction ready to apply: `vector` after `preserve` projection, per-frame/step `alpha`.

    `vector` is (D,) unit length in the embedding space, or (C, h, w) / (C, 1, 1) with RMS entry 1 on
    the latents (module docstring). `alpha` is (S, F): the strength at step s and frame f, zero
    outside the direction's windows. For `latent` directions it is already divided by the number of
    steps in the window, so the latents move by about α·d in total, spread evenly over the window.
    An embedding direction stored with its attribute `predictor` is evaluated per frame
    (`frame_directions`), with `preserve` (M, D) projected out of each frame's gradient; `vector` is
    then the stored summary (the gradient at the examples' mean), used by nothing that moves frames.
    """

    index: int
    space: str
    vector: torch.Tensor
    alpha: torch.Tensor
    predictor: nn.Module | None = None
    preserve: torch.Tensor | None = None


def frame_directions(direction: ResolvedDirection, embeddings: torch.Tensor) -> torch.Tensor:
    """The embedding direction at each frame (F, D), float32: `vector` at every frame, or for a stored
    predictor d_f = ∇score(z_f)/‖∇score(z_f)‖ at `embeddings[f]` with `preserve` projected out and the
    result renormalised (the same conditional manipulation as a fixed vector, per frame)."""
    if direction.predictor is None:
        return direction.vector.to(device=embeddings.device, dtype=torch.float32).expand(embeddings.shape)
    where = f"directions[{direction.index}]"
    z = embeddings.detach().to(torch.float32).contiguous()
    try:
        field = predictor_direction(direction.predictor, z)
    except ValueError as exc:
        raise JobInputError(f"{where}.source", f"the stored predictor's gradient is zero at a frame ({exc})") from exc
    if direction.preserve is None:
        return field
    try:
        return project_out(field, direction.preserve.to(field))
    except (DependentDirectionError, ValueError) as exc:
        raise JobInputError(f"{where}.preserve", f"at a frame's embedding: {exc}") from exc


def strength_table(strength: float | Ramp, num_steps: int, num_frames: int) -> torch.Tensor:
    """(S, F) strength before windows: a number everywhere, or a ramp over frames or over steps."""
    if not isinstance(strength, Ramp):
        return schedules.strength_table(float(strength), num_steps, num_frames)
    return schedules.strength_table(
        strength.from_,
        num_steps,
        num_frames,
        ramp_to=strength.to,
        over=strength.over,
        curve=str(strength.curve),  # type: ignore[arg-type]
    )


def resolve_directions(
    plan: JobPlan, resolver: DirectionResolver, *, strengths: dict[int, float] | None = None
) -> list[ResolvedDirection]:
    """Every direction of the job, checked against the model's spaces; `strengths` overrides the
    strength of some directions by index (a sweep over a direction's strength)."""
    steps, frames = plan.steps, plan.num_frames
    embedding_dim, latent_shape = plan.embedding_dim, plan.latent_shape
    resolved = []
    for i, spec in enumerate(plan.job.directions):
        where = f"directions[{i}]"

        def shaped(source: DirectionSource, at: str, space: str = spec.space) -> torch.Tensor:
            return fit_space(resolver.vector(source, at), space, at, embedding_dim, latent_shape)

        vector = shaped(spec.source, f"{where}.source")
        preserve = None
        try:
            if spec.preserve:
                preserve = torch.stack(
                    [shaped(p, f"{where}.preserve[{k}]").flatten() for k, p in enumerate(spec.preserve)]
                )
                vector = project_out(vector.flatten(), preserve).reshape(vector.shape)
            else:
                vector = normalize(vector.flatten()).reshape(vector.shape)
        except (DependentDirectionError, ValueError) as exc:
            field = f"{where}.preserve" if spec.preserve else f"{where}.source"
            raise JobInputError(field, str(exc)) from exc
        predictor = None
        if spec.space == "embedding":
            predictor = resolver.predictor(spec.source, f"{where}.source")
        else:  # the latents' per-element units at every resolution (module docstring)
            vector = vector * math.sqrt(vector.numel())
        strength = (strengths or {}).get(i, spec.strength)
        alpha = strength_table(strength, steps, frames)
        if spec.frames is not None:
            alpha = alpha * frame_window(frames, *spec.frames)[None, :].to(alpha.dtype)
        if spec.space == "latent":
            window = step_window(steps, *(spec.steps or (0.0, 1.0)))
            alpha = alpha * window[:, None].to(alpha.dtype) / max(int(window.sum()), 1)
        resolved.append(
            ResolvedDirection(
                index=i, space=spec.space, vector=vector, alpha=alpha, predictor=predictor, preserve=preserve
            )
        )
    return resolved


def fit_space(
    vector: torch.Tensor, space: str, where: str, embedding_dim: int, latent_shape: tuple[int, int, int]
) -> torch.Tensor:
    """Shape a raw vector for its space, or fail naming the sizes the model accepts (`where` = field)."""
    flat = vector.flatten().to(torch.float32)
    if not bool(torch.isfinite(flat).all()):
        raise JobInputError(
            where, "the direction has NaN or infinite entries in float32 (every entry must be finite, |x| < 3.4e38)"
        )
    if space == "embedding":
        if flat.numel() != embedding_dim:
            raise JobInputError(
                where,
                f"an embedding direction for this model has {embedding_dim} entries, got {flat.numel()}",
            )
        return flat
    channels, height, width = latent_shape
    if flat.numel() == channels:
        return flat.reshape(channels, 1, 1)
    if flat.numel() == channels * height * width:
        return flat.reshape(channels, height, width)
    raise JobInputError(
        where,
        f"a latent direction for this job has {channels} (per channel) or {channels * height * width} "
        f"({channels}x{height}x{width}) entries, got {flat.numel()}",
    )
