"""Direction discovery from encoded examples X of shape (N, D): unsupervised, contrastive, supervised.

- :func:`pca`: principal axes of X (Härkönen et al., "GANSpace", NeurIPS 2020, apply PCA to latents).
- :func:`ica`: independent components (Hyvärinen & Oja 2000, FastICA; scikit-learn's implementation).
- :func:`contrastive`: normalised mean difference of paired examples (a → b).
- :func:`fit_attribute_predictor` + :func:`predictor_direction`: a small MLP scoring an attribute; the
  direction at z is ∇_z score(z)/‖∇_z score(z)‖ (DESIGN.md §5).
- :func:`linear_probe`: a linear model; the direction is its normalised weight vector (InterFaceGAN's
  hyperplane normal, Shen et al. CVPR 2020).

Each returns a small frozen dataclass holding the vectors and fit statistics, ready to be saved as a
direction's metadata. Everything is deterministic given ``seed``. Inputs are never modified; vectors are
returned in X's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.decomposition import FastICA
from sklearn.linear_model import LogisticRegression, Ridge
from torch import Tensor, nn

from steering.directions import normalize

__all__ = [
    "PREDICTOR_PARAMETERS",
    "ContrastiveDirection",
    "Directions",
    "ICADirections",
    "PredictorFit",
    "ProbeDirection",
    "attribute_predictor",
    "contrastive",
    "fit_attribute_predictor",
    "ica",
    "linear_probe",
    "pca",
    "predictor_direction",
]

Task = Literal["auto", "regression", "classification"]


def _check_x(name: str, x: Tensor, min_rows: int = 2) -> None:
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"`{name}` must be a floating (N, D) tensor, got {x.dtype} of shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"`{name}` needs at least {min_rows} rows, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name}` must be finite")


def _check_k(k: int, limit: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= limit):
        raise ValueError(f"`k` must be an integer in [1, {limit}] (min(N, D) here), got {k!r}")


def _fix_signs(vectors: Tensor) -> Tensor:
    """Per-row sign ±1 making each row's largest-magnitude coordinate positive (a deterministic choice)."""
    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, idx[:, None]))
    return torch.where(signs == 0, torch.ones_like(signs), signs)


# --------------------------------------------------------------------------------------------------
# Unsupervised
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Directions:
    """Principal directions of a set of examples.

    Attributes:
        components: ``(k, D)`` orthonormal principal axes, largest variance first.
        explained_variance: ``(k,)`` variance of X along each axis (unbiased, N − 1).
        explained_variance_ratio: ``(k,)`` share of the total variance of X along each axis.
        mean: ``(D,)`` mean of X (the axes pass through it).
        n: number of examples.
    """

    components: Tensor
    explained_variance: Tensor
    explained_variance_ratio: Tensor
    mean: Tensor
    n: int


def pca(X: Tensor, k: int) -> Directions:
    """Principal component analysis via an SVD of the centred data (float64).

    ``X − mean = U S Vᵀ``; the components are the first k rows of Vᵀ, with variance S²/(N − 1). Each
    component's sign is fixed so that its largest-magnitude coordinate is positive.

    Args:
        X: ``(N, D)`` encoded examples, N >= 2.
        k: number of components, 1 <= k <= min(N, D).
    """
    _check_x("X", X)
    n, d = X.shape
    _check_k(k, min(n, d))
    x64 = X.detach().to(torch.float64)
    mean = x64.mean(dim=0)
    _, s, vh = torch.linalg.svd(x64 - mean, full_matrices=False)
    variance = s**2 / (n - 1)
    total = float(variance.sum())
    if total <= 0.0:
        raise ValueError("`X` has zero variance: all rows are identical")
    components = vh[:k] * _fix_signs(vh[:k])
    return Directions(
        components=components.to(X.dtype),
        explained_variance=variance[:k].to(X.dtype),
        explained_variance_ratio=(variance[:k] / total).to(X.dtype),
        mean=mean.to(X.dtype),
        n=n,
    )


@dataclass(frozen=True, eq=False)
class ICADirections:
    """Independent components of a set of examples.

    Attributes:
        directions: ``(k, D)`` normalised unmixing rows w_i; source i of x is ``w_i·(x − mean)`` up to
            scale. These detect a component.
        mixing: ``(k, D)`` normalised mixing vectors a_i (x ≈ mean + Σ s_i·a_i). Adding a_i changes
            source i alone, so these are the vectors to edit along; they coincide with ``directions``
            when the sources are mixed orthogonally. Signs are paired with ``directions``.
        mean: ``(D,)`` mean of X.
        n: number of examples.
        iterations: FastICA iterations run.
        converged: whether FastICA stopped on ``tol`` before ``max_iter``.
    """

    directions: Tensor
    mixing: Tensor
    mean: Tensor
    n: int
    iterations: int
    converged: bool


def ica(X: Tensor, k: int, seed: int = 0, max_iter: int = 1000, tol: float = 1e-4) -> ICADirections:
    """FastICA (Hyvärinen & Oja 2000) via scikit-learn on CPU float64, logcosh contrast.

    X is whitened to k dimensions by PCA, then rotated to make the k projections maximally
    non-Gaussian. Independent non-Gaussian (e.g. uniform, Laplace) factors are recovered up to order,
    sign and scale; Gaussian factors cannot be separated. Each pair (direction, mixing vector) has its
    sign fixed so that the direction's largest-magnitude coordinate is positive.

    Args:
        X: ``(N, D)`` encoded examples, N >= 2.
        k: number of components, 1 <= k <= min(N, D).
        seed: FastICA's random initialisation.
    """
    _check_x("X", X)
    n, d = X.shape
    _check_k(k, min(n, d))
    x = X.detach().to(device="cpu", dtype=torch.float64).numpy()
    model = FastICA(
        n_components=k, whiten="unit-variance", random_state=seed, max_iter=max_iter, tol=tol, fun="logcosh"
    )
    model.fit(x)
    unmixing = torch.from_numpy(np.ascontiguousarray(model.components_, dtype=np.float64))
    mixing = torch.from_numpy(np.ascontiguousarray(model.mixing_.T, dtype=np.float64))
    unmixing, mixing = normalize(unmixing), normalize(mixing)
    signs = _fix_signs(unmixing)
    iterations = int(model.n_iter_)
    return ICADirections(
        directions=(unmixing * signs).to(device=X.device, dtype=X.dtype),
        mixing=(mixing * signs).to(device=X.device, dtype=X.dtype),
        mean=torch.from_numpy(np.asarray(model.mean_, dtype=np.float64)).to(device=X.device, dtype=X.dtype),
        n=n,
        iterations=iterations,
        converged=iterations < max_iter,
    )


# --------------------------------------------------------------------------------------------------
# Contrastive
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ContrastiveDirection:
    """Direction from paired examples.

    Attributes:
        direction: ``(D,)`` unit vector from the a side toward the b side.
        n_pairs: number of pairs.
        mean_difference_norm: ‖mean(X_b − X_a)‖, the length of the average edit.
        consistency: mean cosine between each pair's difference and ``direction`` (1: every pair
            differs the same way; near 0: the pairs disagree).
    """

    direction: Tensor
    n_pairs: int
    mean_difference_norm: float
    consistency: float


def contrastive(X_a: Tensor, X_b: Tensor) -> ContrastiveDirection:
    """``d = mean_i(x_b,i − x_a,i) / ‖mean_i(x_b,i − x_a,i)‖`` over paired rows.

    Args:
        X_a, X_b: ``(N, D)`` each; row i of X_a is paired with row i of X_b (e.g. the same face without
            and with a smile). N >= 1.
    """
    _check_x("X_a", X_a, min_rows=1)
    _check_x("X_b", X_b, min_rows=1)
    if X_a.shape != X_b.shape:
        raise ValueError(f"`X_a` and `X_b` must have the same shape, got {tuple(X_a.shape)} and {tuple(X_b.shape)}")
    diffs = X_b.detach().to(torch.float64) - X_a.detach().to(torch.float64)
    mean = diffs.mean(dim=0)
    norm = float(torch.linalg.vector_norm(mean))
    if norm == 0.0:
        raise ValueError("the paired differences average to zero: there is no direction")
    direction = mean / norm
    pair_norms = torch.linalg.vector_norm(diffs, dim=1)
    cosines = (diffs @ direction)[pair_norms > 0] / pair_norms[pair_norms > 0]
    return ContrastiveDirection(
        direction=direction.to(X_a.dtype),
        n_pairs=int(X_a.shape[0]),
        mean_difference_norm=norm,
        consistency=float(cosines.mean()) if cosines.numel() else 0.0,
    )


# --------------------------------------------------------------------------------------------------
# Supervised
# --------------------------------------------------------------------------------------------------


def _resolve_task(y: Tensor, task: Task) -> Literal["regression", "classification"]:
    if task == "auto":
        values = set(torch.unique(y).tolist())
        return "classification" if values <= {0.0, 1.0} and len(values) == 2 else "regression"
    if task not in ("regression", "classification"):
        raise ValueError(f"`task` must be 'auto', 'regression' or 'classification', got {task!r}")
    if task == "classification" and not set(torch.unique(y).tolist()) <= {0.0, 1.0}:
        raise ValueError("classification needs binary labels `y` in {0, 1}")
    return task


def _check_xy(X: Tensor, y: Tensor) -> Tensor:
    _check_x("X", X)
    if y.dim() != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"`y` must be ({X.shape[0]},) to match X, got {tuple(y.shape)}")
    y64 = y.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(y64).all()):
        raise ValueError("`y` must be finite")
    return y64


def _r2(pred: Tensor, y: Tensor) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else 0.0


class _AttributeMLP(nn.Module):
    """score(z) = w₂·tanh(W₁·(z − μ)/s + b₁) + b₂, with μ, s the training mean and overall RMS scale.

    One scalar scale (not per-dimension) keeps the input space isotropic, so the gradient is not
    reweighted toward low-variance coordinates.
    """

    center: Tensor
    scale: Tensor

    def __init__(self, mean: Tensor, scale: float, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        d = mean.shape[0]
        self.register_buffer("center", mean.to(torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.hidden = nn.Linear(d, hidden)
        self.out = nn.Linear(hidden, 1)
        with torch.no_grad():
            for layer in (self.hidden, self.out):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
                layer.bias.zero_()

    def forward(self, z: Tensor) -> Tensor:
        """``(N, D) -> (N,)`` scores (a logit for classification)."""
        h = torch.tanh(self.hidden((z - self.center) / self.scale))
        score: Tensor = self.out(h).squeeze(-1)
        return score


@dataclass(frozen=True, eq=False)
class PredictorFit:
    """A trained attribute predictor and its fit statistics.

    Attributes:
        model: the MLP module, ``(N, D) -> (N,)`` float32 scores (logits for classification).
        task: "regression" or "classification".
        n: number of examples (training and validation together).
        train_score: R² (regression) or accuracy (classification) on the training rows.
        validation_score: the same on the held-out rows; None when nothing was held out.
        best_epoch: the epoch whose weights were kept (lowest validation loss, or the last one).
        hidden, epochs, seed: the settings it was trained with.
    """

    model: nn.Module
    task: Literal["regression", "classification"]
    n: int
    train_score: float
    validation_score: float | None
    best_epoch: int
    hidden: int
    epochs: int
    seed: int

    def __call__(self, z: Tensor) -> Tensor:
        """Scores ``(N, D) -> (N,)``."""
        score: Tensor = self.model(z)
        return score


def _loss(out: Tensor, target: Tensor, task: str) -> Tensor:
    if task == "regression":
        return torch.nn.functional.mse_loss(out, target)
    return torch.nn.functional.binary_cross_entropy_with_logits(out, target)


def _fit_score(pred: Tensor, y: Tensor, task: str) -> float:
    if task == "regression":
        return _r2(pred, y)
    return float(((pred > 0).to(torch.float64) == y).to(torch.float64).mean())


def fit_attribute_predictor(
    X: Tensor,
    y: Tensor,
    hidden: int = 32,
    epochs: int = 300,
    seed: int = 0,
    task: Task = "auto",
    lr: float = 1e-2,
    weight_decay: float = 1e-2,
    validation: float = 0.2,
) -> PredictorFit:
    """Train a one-hidden-layer MLP scoring an attribute from embeddings (full-batch Adam, float32, CPU).

    Regression minimises the mean squared error on standardised targets (the score is returned in y's
    units); classification (binary y in {0, 1}) minimises the logistic loss and scores with the logit.
    ``task="auto"`` picks classification when y takes exactly the values 0 and 1. A ``validation``
    fraction of the rows (a seeded permutation) is held out and the weights of the epoch with the lowest
    validation loss are kept (early stopping): a predictor that memorises its few hundred labelled
    examples has a gradient that points anywhere, which is what the direction is read from.

    Args:
        X: ``(N, D)`` embeddings. y: ``(N,)`` attribute values or 0/1 labels.
        hidden: hidden width. epochs: full-batch Adam steps. seed: initialisation and split.
        weight_decay: L2 penalty of Adam. validation: held-out fraction in [0, 0.5]; 0 trains on all
            rows for all epochs.
    """
    # 1. check inputs
    y64 = _check_xy(X, y)
    resolved = _resolve_task(y64, task)
    if hidden < 1 or epochs < 1:
        raise ValueError(f"`hidden` and `epochs` must be >= 1, got hidden={hidden}, epochs={epochs}")
    if not (0.0 <= validation <= 0.5):
        raise ValueError(f"`validation` must be in [0, 0.5], got {validation}")

    # 2. deterministic train/validation split
    n = int(X.shape[0])
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = round(validation * n)
    if validation > 0.0 and not (1 <= n_val <= n - 2):
        raise ValueError(f"`validation`={validation} leaves no usable split of {n} rows")
    val_idx, train_idx = order[:n_val], order[n_val:]
    x = X.detach().to(device="cpu", dtype=torch.float32)
    y32 = y64.to(torch.float32)

    # 3. the model (centred and scaled by the training rows) and standardised regression targets
    x_train = x[train_idx]
    mean = x_train.mean(dim=0)
    scale = float((x_train - mean).square().mean().sqrt()) or 1.0
    model = _AttributeMLP(mean, scale, hidden, generator)
    y_mean, y_std = 0.0, 1.0
    if resolved == "regression":
        y_mean, y_std = float(y32[train_idx].mean()), float(y32[train_idx].std()) or 1.0
    target = (y32 - y_mean) / y_std

    # 4. full-batch Adam, keeping the weights with the lowest validation loss
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_loss, best_epoch = math.inf, epochs
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    for epoch in range(1, epochs + 1):
        optimiser.zero_grad()
        loss = _loss(model(x_train), target[train_idx], resolved)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if n_val:
            with torch.no_grad():
                val_loss = float(_loss(model(x[val_idx]), target[val_idx], resolved))
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if n_val:
        model.load_state_dict(best_state)

    # 5. scores in y's units, fit statistics
    with torch.no_grad():
        # fold the target standardisation into the output layer
        model.out.weight.mul_(y_std)
        model.out.bias.mul_(y_std).add_(y_mean)
        pred = model(x).to(torch.float64)
    model.eval()
    return PredictorFit(
        model=model,
        task=resolved,
        n=n,
        train_score=_fit_score(pred[train_idx], y64[train_idx], resolved),
        validation_score=_fit_score(pred[val_idx], y64[val_idx], resolved) if n_val else None,
        best_epoch=best_epoch,
        hidden=hidden,
        epochs=epochs,
        seed=seed,
    )


PREDICTOR_PARAMETERS = ("center", "scale", "hidden.weight", "hidden.bias", "out.weight", "out.bias")
"""The names in an attribute predictor's ``state_dict()``, in the order of its formula."""


def attribute_predictor(state: Mapping[str, Tensor]) -> nn.Module:
    """Rebuild the predictor :func:`fit_attribute_predictor` trained from its ``state_dict()``.

    ``score(z) = out.weight·tanh(hidden.weight·(z − center)/scale + hidden.bias) + out.bias`` with
    center ``(D,)``, scale ``()`` (> 0), hidden.weight ``(H, D)``, hidden.bias ``(H,)``, out.weight
    ``(1, H)``, out.bias ``(1,)``: this is everything the scores and gradients depend on, so a stored
    predictor needs no pickle. Returns a float32 CPU module in eval mode whose parameters do not
    require gradients (only the input's gradient is read from it).

    Raises:
        ValueError: naming the first tensor that is missing, unexpected, of the wrong shape, not
            floating point or not finite.
    """
    names = set(state)
    if names != set(PREDICTOR_PARAMETERS):
        missing, extra = sorted(set(PREDICTOR_PARAMETERS) - names), sorted(names - set(PREDICTOR_PARAMETERS))
        raise ValueError(f"a predictor has exactly {', '.join(PREDICTOR_PARAMETERS)}; missing {missing}, extra {extra}")
    for name in PREDICTOR_PARAMETERS:
        value = state[name]
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise ValueError(f"predictor tensor `{name}` must be floating point and finite")
    center, weight = state["center"], state["hidden.weight"]
    if center.dim() != 1 or center.shape[0] < 1:
        raise ValueError(f"predictor tensor `center` must be (D,), got {tuple(center.shape)}")
    d = center.shape[0]
    if weight.dim() != 2 or weight.shape[1] != d or weight.shape[0] < 1:
        raise ValueError(f"predictor tensor `hidden.weight` must be (H, {d}), got {tuple(weight.shape)}")
    hidden = weight.shape[0]
    shapes = {"scale": (), "hidden.bias": (hidden,), "out.weight": (1, hidden), "out.bias": (1,)}
    for name, shape in shapes.items():
        if tuple(state[name].shape) != shape:
            raise ValueError(f"predictor tensor `{name}` must be {shape}, got {tuple(state[name].shape)}")
    if not float(state["scale"]) > 0.0:
        raise ValueError(f"predictor tensor `scale` must be > 0, got {float(state['scale'])}")
    model = _AttributeMLP(center, float(state["scale"]), hidden, torch.Generator().manual_seed(0))
    model.load_state_dict({name: state[name].detach().to(device="cpu", dtype=torch.float32) for name in names})
    model.requires_grad_(False)
    return model.eval()


def predictor_direction(model: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """The attribute direction at z: ``∇_z score(z) / ‖∇_z score(z)‖`` (DESIGN.md §5).

    Args:
        model: ``(N, D) -> (N,)`` differentiable scorer, e.g. a :class:`PredictorFit` or its ``model``.
        z: ``(D,)`` or ``(N, D)``; each row gets its own gradient (rows are scored independently).

    Returns:
        Unit direction(s) shaped like ``z``, in z's dtype. Raises where the gradient is zero.
    """
    if z.dim() not in (1, 2) or not z.is_floating_point():
        raise ValueError(f"`z` must be a floating (D,) or (N, D) tensor, got {z.dtype} {tuple(z.shape)}")
    module = model.model if isinstance(model, PredictorFit) else model
    param = next(module.parameters(), None) if isinstance(module, nn.Module) else None
    # score in the predictor's own dtype and device; the direction goes back to z's
    dtype, device = (param.dtype, param.device) if param is not None else (torch.float32, z.device)
    batch = z.detach().reshape(-1, z.shape[-1]).to(device=device, dtype=dtype).requires_grad_(True)
    with torch.enable_grad():
        scores = model(batch)
        if scores.shape != (batch.shape[0],):
            raise ValueError(f"`model` must map (N, D) to (N,), got output shape {tuple(scores.shape)}")
        (grad,) = torch.autograd.grad(scores.sum(), [batch])
    return normalize(grad.to(torch.float64)).to(device=z.device, dtype=z.dtype).reshape(z.shape)


@dataclass(frozen=True, eq=False)
class ProbeDirection:
    """A linear probe and its direction.

    Attributes:
        direction: ``(D,)`` the normalised weight vector (pointing toward higher scores / class 1).
        weight: ``(D,)`` raw weights. bias: intercept.
        task: "regression" (ridge) or "classification" (L2 logistic regression).
        train_score: R² or accuracy on the training set.
        n: number of examples.
    """

    direction: Tensor
    weight: Tensor
    bias: float
    task: Literal["regression", "classification"]
    train_score: float
    n: int


def linear_probe(X: Tensor, y: Tensor, task: Task = "auto", l2: float = 1.0) -> ProbeDirection:
    """Fit a linear model ``score = w·x + b`` and return ``w/‖w‖`` (InterFaceGAN's hyperplane normal).

    Regression is ridge regression (scikit-learn ``Ridge(alpha=l2)``); classification is L2-regularised
    logistic regression (``LogisticRegression(C=1/l2)``, lbfgs, deterministic). Runs on CPU float64.

    Args:
        X: ``(N, D)`` embeddings. y: ``(N,)`` attribute values or 0/1 labels.
        l2: regularisation strength (> 0).
    """
    y64 = _check_xy(X, y)
    resolved = _resolve_task(y64, task)
    if not (math.isfinite(l2) and l2 > 0):
        raise ValueError(f"`l2` must be finite and > 0, got {l2}")
    x = X.detach().to(device="cpu", dtype=torch.float64).numpy()
    target = y64.numpy()
    if resolved == "regression":
        reg = Ridge(alpha=l2).fit(x, target)
        weight = np.asarray(reg.coef_, dtype=np.float64).reshape(-1)
        bias = float(reg.intercept_)
        score = float(reg.score(x, target))
    else:
        clf = LogisticRegression(C=1.0 / l2, max_iter=2000).fit(x, target.astype(np.int64))
        weight = np.asarray(clf.coef_, dtype=np.float64).reshape(-1)
        bias = float(np.asarray(clf.intercept_).reshape(-1)[0])
        score = float(clf.score(x, target.astype(np.int64)))
    w = torch.from_numpy(weight)
    if float(torch.linalg.vector_norm(w)) == 0.0:
        raise ValueError("the probe's weights are all zero: `y` is not linearly related to `X`")
    return ProbeDirection(
        direction=normalize(w).to(device=X.device, dtype=X.dtype),
        weight=w.to(device=X.device, dtype=X.dtype),
        bias=bias,
        task=resolved,
        train_score=score,
        n=int(X.shape[0]),
    )
