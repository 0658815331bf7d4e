"""Discovering directions from images: encode them with a model, fit, save with a leakage report."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import PIL.Image
import torch
from torch import nn

from steering import discovery
from steering.disentanglement import attribute_report, not_measured
from workers.directions import direction_bytes, save_direction
from workers.models import LoadedModel

Method = Literal["pca", "ica", "supervised", "probe", "contrastive"]
Space = Literal["embedding", "latent"]


@dataclass
class FittedSet:
    """Directions (K, D) with their per-direction statistics and the set's leakage report.

    `predictors` holds, per direction, the attribute predictor a supervised fit trained (the direction
    is its normalised gradient, evaluated by a job at each frame's embedding) or None; empty for the
    methods that give fixed vectors."""

    vectors: torch.Tensor
    stats: list[dict[str, Any]]
    leakage: dict[str, Any]
    predictors: list[nn.Module | None] = field(default_factory=list)

    def predictor(self, index: int) -> nn.Module | None:
        return self.predictors[index] if self.predictors else None


def encode_images(
    model: LoadedModel, images: Sequence[PIL.Image.Image], space: Space, width: int, height: int
) -> torch.Tensor:
    """(N, D): CLIP image embeddings, or flattened VAE latents (scaled, as the denoiser sees them)."""
    pipe = model.pipeline
    rows = []
    clean = torch.zeros((1, 3, height, width), dtype=torch.float32, device=pipe._execution_device)
    for image in images:
        if space == "embedding":
            rows.append(pipe.encode_image_embedding(image).float().cpu())
        else:
            latent = pipe.encode_image(image, height, width, clean, 0.0).latent * pipe.vae.config.scaling_factor
            rows.append(latent.float().cpu().flatten())
    return torch.stack(rows)


def fit(
    method: Method,
    X: torch.Tensor,
    *,
    k: int = 1,
    labels: torch.Tensor | None = None,
    X_b: torch.Tensor | None = None,
    attributes: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
) -> FittedSet:
    """Fit directions by `method` on encoded examples X (N, D); `X_b` pairs with X for contrastive.
    `attributes` (name → one value per example) are what the leakage report measures against."""
    predictors: list[nn.Module | None] = []
    if method == "pca":
        found = discovery.pca(X, k)
        vectors = found.components
        stats = [
            {"explained_variance": float(v), "explained_variance_ratio": float(r), "n": found.n}
            for v, r in zip(found.explained_variance, found.explained_variance_ratio, strict=True)
        ]
    elif method == "ica":
        ica = discovery.ica(X, k, seed=seed)
        vectors = ica.mixing
        stats = [{"n": ica.n, "iterations": ica.iterations, "converged": ica.converged} for _ in range(k)]
    elif method in ("supervised", "probe"):
        if labels is None or len(labels) != len(X):
            raise ValueError(f"`--labels` must give one number per image ({len(X)})")
        if method == "probe":
            probe = discovery.linear_probe(X, labels)
            vectors = probe.direction[None]
            stats = [{"task": probe.task, "train_score": probe.train_score, "n": probe.n}]
        else:
            predictor = discovery.fit_attribute_predictor(X, labels, seed=seed)
            # The stored vector is the field at the examples' mean: a summary for listings and fixed
            # uses; an embedding job evaluates the stored predictor at each frame's own embedding.
            vectors = discovery.predictor_direction(predictor, X.mean(dim=0))[None]
            predictors = [predictor.model]
            stats = [
                {
                    "task": predictor.task,
                    "train_score": predictor.train_score,
                    "validation_score": predictor.validation_score,
                    "n": predictor.n,
                    "hidden": predictor.hidden,
                    "at": "mean of the examples",
                }
            ]
    elif method == "contrastive":
        if X_b is None:
            raise ValueError("contrastive fitting needs pairs")
        pair = discovery.contrastive(X, X_b)
        vectors = pair.direction[None]
        stats = [
            {
                "n_pairs": pair.n_pairs,
                "mean_difference_norm": pair.mean_difference_norm,
                "consistency": pair.consistency,
            }
        ]
    else:
        raise ValueError(f"unknown method {method!r}")
    vectors = vectors.to(torch.float32)
    leakage = attribute_report(vectors, X, attributes, seed=seed).to_dict() if attributes else not_measured()
    return FittedSet(vectors=vectors, stats=stats, leakage=leakage, predictors=predictors)


def fitted_bytes(fitted: FittedSet, index: int) -> bytes:
    """The safetensors file of direction `index`: its `direction` tensor, plus its attribute predictor
    (`predictor.*` tensors and metadata, `workers.direction_predictor`) when the fit trained one."""
    return direction_bytes(fitted.vectors[index], fitted.predictor(index))


def save_fitted(
    fitted: FittedSet, folder: Path, prefix: str, *, method: Method, space: Space, model: LoadedModel, extra: dict
) -> list[Path]:
    """One `<prefix>_<k>.safetensors` + `.json` per direction; every JSON carries the set's leakage, and
    says how a job evaluates the direction (`evaluated`: one vector, or a stored predictor's gradient at
    each frame's embedding)."""
    paths = []
    for i, (vector, stats) in enumerate(zip(fitted.vectors, fitted.stats, strict=True)):
        predictor = fitted.predictor(i)
        per_frame = predictor is not None and space == "embedding"
        meta = {
            "method": method,
            "space": space,
            "dimension": int(vector.numel()),
            "model": model.describe(),
            "fit": stats,
            "leakage": fitted.leakage,
            "index_in_set": i,
            "evaluated": "gradient_per_frame" if per_frame else "fixed",
            **extra,
        }
        paths.append(save_direction(folder, f"{prefix}_{i}", vector, meta, predictor))
    return paths
