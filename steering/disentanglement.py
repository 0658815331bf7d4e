"""How well a set of directions separates labelled attributes, measured against the labels.

Three figures, all from examples whose attributes are known (labels per example, one array per
named attribute), computed on a held-out split:

- **Leakage** `L[i][j]`: the change of attribute i's predicted score when the held-out examples move
  a unit step along direction j, each row divided by its largest entry in magnitude (the direction
  that moves attribute i most, its own in a disentangled set). A disentangled set gives one 1 per row
  and zeros elsewhere. The predictors are least-squares fits of each attribute on the training split.
- **MIG** (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"): for each attribute, the
  gap between the largest and second-largest mutual information of one direction's coordinate with
  it, divided by the attribute's entropy; averaged over attributes. Coordinates (and attributes with
  many distinct values) are discretised into equal-width bins, as in the paper's reference code.
- **SAP** (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
  Observations"): a score per (coordinate, attribute): the R² of a linear fit for a continuous
  attribute, the balanced accuracy of the best threshold on the coordinate for a binary one; the gap
  between the two best coordinates of each attribute, averaged over attributes.

Without labelled attributes none of this can be measured, and the fit report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

BINS = 20


@dataclass(frozen=True)
class AttributeReport:
    names: list[str]
    leakage: list[list[float]]  # (attributes, directions)
    mig: float | None  # None for a single direction: both compare the two best coordinates
    sap: float | None
    predictor_r2: list[float]  # held-out R² of each attribute's predictor
    held_out: int

    def to_dict(self) -> dict[str, object]:
        return {
            "measured": True,
            "attributes": self.names,
            "leakage": self.leakage,
            "mig": self.mig,
            "sap": self.sap,
            "predictor_r2": self.predictor_r2,
            "held_out": self.held_out,
            "predictors": "least squares per attribute on the training split",
        }


def not_measured() -> dict[str, object]:
    return {
        "measured": False,
        "reason": "leakage, MIG and SAP need labelled attributes (one value per image for each); none were given",
    }


def _discretise(values: Tensor, bins: int = BINS) -> Tensor:
    """Integer bin of each value: the values themselves when they take at most `bins` distinct values."""
    distinct = torch.unique(values)
    if len(distinct) <= bins:
        return torch.searchsorted(distinct, values.contiguous())
    low, high = float(values.min()), float(values.max())
    edges = torch.linspace(low, high, bins + 1, dtype=values.dtype)[1:-1]
    return torch.bucketize(values.contiguous(), edges)


def _entropy(labels: Tensor) -> float:
    counts = torch.bincount(labels).to(torch.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def _mutual_information(a: Tensor, b: Tensor) -> float:
    joint = torch.zeros((int(a.max()) + 1, int(b.max()) + 1), dtype=torch.float64)
    joint.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz] / (pa @ pb)[nz]).log()).sum())


def mig(codes: Tensor, factors: Tensor) -> float:
    """Mutual information gap of codes (N, K) against factors (N, F); in [0, 1] (needs K >= 2)."""
    if codes.shape[1] < 2:
        raise ValueError("MIG compares the two most informative coordinates: it needs two directions or more")
    binned = [_discretise(codes[:, j]) for j in range(codes.shape[1])]
    gaps = []
    for f in range(factors.shape[1]):
        v = _discretise(factors[:, f])
        h = _entropy(v)
        if h <= 0:
            continue
        info = sorted((_mutual_information(z, v) for z in binned), reverse=True)
        gaps.append((info[0] - info[1]) / h)
    return float(sum(gaps) / len(gaps)) if gaps else 0.0


def _score(code: Tensor, factor: Tensor) -> float:
    """SAP's score of one coordinate for one attribute."""
    if len(torch.unique(factor)) == 2:  # binary: balanced accuracy of the best threshold, either side
        positive = factor == factor.max()
        best = 0.5
        for t in torch.unique(code):
            above = code >= t
            for guess in (above, ~above):
                tpr = float((guess & positive).sum()) / max(1, int(positive.sum()))
                tnr = float((~guess & ~positive).sum()) / max(1, int((~positive).sum()))
                best = max(best, (tpr + tnr) / 2)
        return best
    c, f = code - code.mean(), factor - factor.mean()
    denominator = float((c * c).sum() * (f * f).sum())
    return float((c * f).sum()) ** 2 / denominator if denominator > 0 else 0.0


def sap(codes: Tensor, factors: Tensor) -> float:
    """Separated attribute predictability of codes (N, K) against factors (N, F) (needs K >= 2)."""
    if codes.shape[1] < 2:
        raise ValueError("SAP compares the two best coordinates: it needs two directions or more")
    gaps = []
    for f in range(factors.shape[1]):
        scores = sorted((_score(codes[:, j], factors[:, f]) for j in range(codes.shape[1])), reverse=True)
        gaps.append(scores[0] - scores[1])
    return float(sum(gaps) / len(gaps))


def attribute_report(
    directions: Tensor, X: Tensor, attributes: dict[str, Tensor], held_out: float = 0.3, seed: int = 0
) -> AttributeReport:
    """Leakage, MIG and SAP of `directions` (K, D) on examples X (N, D) with labelled `attributes`
    (name → (N,) values), predictors fitted on a random (1 − held_out) split and measured on the rest."""
    n = X.shape[0]
    for name, values in attributes.items():
        if values.shape != (n,):
            raise ValueError(f"attribute {name!r} needs one value per image ({n}), got {tuple(values.shape)}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = max(2, round(n * (1 - held_out)))
    if n - cut < 2:
        raise ValueError(f"too few images ({n}) to hold some out for measuring")
    train, test = order[:cut], order[cut:]
    x = X.to(torch.float64)
    d = directions.to(torch.float64)
    names = list(attributes)
    factors = torch.stack([attributes[k].to(torch.float64) for k in names], dim=1)

    # One least-squares predictor per attribute (with an intercept), fitted on the training split.
    design = torch.cat([x[train], torch.ones(len(train), 1, dtype=torch.float64)], dim=1)
    weights = torch.linalg.lstsq(design, factors[train], driver="gelsd").solution  # (D + 1, F)
    w = weights[:-1]  # (D, F)
    predicted = torch.cat([x[test], torch.ones(len(test), 1, dtype=torch.float64)], dim=1) @ weights
    residual = ((predicted - factors[test]) ** 2).sum(0)
    total = ((factors[test] - factors[test].mean(0)) ** 2).sum(0).clamp_min(1e-12)
    r2 = (1 - residual / total).tolist()

    # The change of each predicted attribute for a unit step along each direction (the same at every
    # example for a linear predictor), each row divided by its largest entry.
    unit = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    change = (unit @ w).T  # (F, K)
    scale = change.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    leakage = change / scale

    codes = x[test] @ unit.T
    return AttributeReport(
        names=names,
        leakage=leakage.tolist(),
        mig=mig(codes, factors[test]) if d.shape[0] >= 2 else None,
        sap=sap(codes, factors[test]) if d.shape[0] >= 2 else None,
        predictor_r2=r2,
        held_out=len(test),
    )
