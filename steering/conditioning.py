"""Per-frame conditioning values: keyframes interpolated over a clip's frames, weighted reference tokens.

Frame f of F sits at t_f = f / (F − 1). Keyframes at positions a_0 < … < a_K condition frame f on the
interpolation of the two keyframes around t_f (held flat before a_0 and after a_K). The same
function serves both conditioning spaces of SVD: CLIP image embeddings (K, D) and VAE image latents
(K, C, h, w).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from steering.interpolate import MIN_CORPUS, KnnPenalty, geodesic, lerp, slerp

__all__ = ["corpus_penalty", "frame_positions", "interpolate_both", "interpolate_frames", "reference_tokens"]

NO_CORPUS = (
    f"geodesic needs a reference corpus of at least {MIN_CORPUS} embeddings of this model (the job's `corpus`, "
    "or `geodesic_corpus` in the model's spec); without one the path is slerp and no energy gain is claimed"
)


def frame_positions(num_frames: int) -> Tensor:
    """t_f = f / (F − 1), float64, shape (F,)."""
    return torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)


def interpolate_frames(
    values: Tensor,
    positions: list[float],
    num_frames: int,
    method: str,
    penalty: KnnPenalty | None = None,
    at: float | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Per-frame values (F, *shape) along the keyframe values (K, *shape) at `positions`
    (or the single value at position `at`, shaped (1, *shape)).

    `method` is `linear`, `slerp` or `geodesic`; geodesic needs a `penalty` (distance from a reference
    corpus, `corpus_penalty`), without one it is slerp and the report says so (`interpolation_used`).
    Each segment's penalty is weighted by its endpoints' squared distance, the straight line's own
    path energy, so the two terms keep their balance at any scale. Returns the values and a report:
    the method used and, for geodesic, the energies of linear, slerp and the geodesic under that one
    functional.
    """
    t = frame_positions(num_frames) if at is None else torch.tensor([at], dtype=torch.float64)
    out = values[0].unsqueeze(0).repeat(len(t), *([1] * (values.ndim - 1)))
    out[t >= positions[-1]] = values[-1]
    report: dict[str, Any] = {"method": method}
    energies: list[tuple[float, float, float]] = []
    for k in range(len(positions) - 1):
        a, b = positions[k], positions[k + 1]
        inside = (t >= a) & (t < b)
        if not inside.any():
            continue
        u = ((t[inside] - a) / (b - a)).to(torch.float32)
        if method == "linear":
            segment = lerp(values[k], values[k + 1], u)
        elif method == "slerp" or penalty is None:
            segment = slerp(values[k], values[k + 1], u)
        else:
            weight = float((values[k + 1].double() - values[k].double()).square().sum())
            path = geodesic(values[k], values[k + 1], u, penalty=penalty, weight=weight)
            segment = path.points
            energies.append((path.energy, path.slerp_energy, path.lerp_energy))
        out[inside] = segment.to(out.dtype)
    if method == "geodesic":
        if penalty is None:
            report.update(method="slerp", interpolation_used="slerp", fallback=NO_CORPUS)
        else:
            report.update(
                interpolation_used="geodesic",
                energy=sum(e for e, _, _ in energies),
                slerp_energy=sum(s for _, s, _ in energies),
                lerp_energy=sum(le for _, _, le in energies),
            )
    return out, report


def interpolate_both(
    embeddings: Tensor,
    latents: Tensor,
    positions: list[float],
    num_frames: int,
    method: str,
    penalty: KnnPenalty | None = None,
    at: float | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """`interpolate_frames` in SVD's two conditioning spaces: CLIP embeddings (K, D) with the corpus
    `penalty`, and VAE image latents (K, C, h, w), which have no corpus (tens of thousands of
    dimensions: geodesic falls back to slerp there, and the report says so).
    Returns per-frame embeddings, latents and the report of each space."""
    frame_embeddings, embedding_report = interpolate_frames(embeddings, positions, num_frames, method, penalty, at)
    frame_latents, latent_report = interpolate_frames(latents, positions, num_frames, method, None, at)
    return frame_embeddings, frame_latents, {"embedding": embedding_report, "image_latent": latent_report}


def corpus_penalty(corpus: Tensor | None) -> KnnPenalty | None:
    """The geodesic's manifold model from a reference corpus of embeddings (N, D); None (geodesic
    falls back to slerp) without one of at least `MIN_CORPUS` points."""
    if corpus is None or corpus.shape[0] < MIN_CORPUS:
        return None
    return KnnPenalty.fit(corpus)


def reference_tokens(tokens: Tensor, references: list[Tensor], weights: list[float]) -> tuple[Tensor, Tensor | None]:
    """Append reference tokens (R of (D,)) to per-frame tokens (F, 1, D) → (F, 1 + R, D), with their
    attention-logit bias (F, 1 + R); the bias is None without references.

    A reference of weight w enters the attention softmax as exp(s) · w: bias log w (−inf at w = 0,
    which removes the token exactly). Weight 1 makes it as strong as the image's own token.
    """
    if not references:
        return tokens, None
    num_frames = tokens.shape[0]
    refs = torch.stack(references).to(tokens.dtype)  # (R, D)
    tokens = torch.cat([tokens, refs.unsqueeze(0).expand(num_frames, -1, -1)], dim=1)
    logs = [0.0] + [math.log(w) if w > 0 else -math.inf for w in weights]
    bias = torch.tensor(logs, dtype=torch.float32).unsqueeze(0).expand(num_frames, -1).clone()
    return tokens, bias
