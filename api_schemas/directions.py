"""Stored directions: vectors a tenant uploads once and jobs cite as `{"id": "dir_..."}`.

A direction acts in the CLIP image-embedding space (a vector as wide as the model's embedding) or on
the latents (one value per latent channel, or one per latent element at the job's size). What a model
accepts is `ModelDimensions`: the service knows it for the built-in models and from its settings for
others, and checks an upload against it.
"""

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from api_schemas.job import Strict, Webhook, check_values, rule_error
from api_schemas.refs import ASSET_ID
from api_schemas.resources import Artifact, JobStatus, ModelDimensions, Problem, Progress, Resource

DirectionSpace = Literal["embedding", "latent"]
MAX_DIRECTION_VALUES = 65536


# The built-in models' widths; others come from the API's `VSTEER_MODEL_DIMENSIONS`.
KNOWN_DIMENSIONS: dict[str, ModelDimensions] = {
    "svd": ModelDimensions(embedding=1024, latent_channels=4),
    "svd-xt": ModelDimensions(embedding=1024, latent_channels=4),
    "tiny": ModelDimensions(embedding=32, latent_channels=4),
    "toy": ModelDimensions(embedding=32, latent_channels=4),
}


class DirectionCreate(Strict):
    """`POST /v1/directions` with a vector made elsewhere (or a multipart safetensors upload)."""

    vector: list[float] = Field(
        min_length=1, max_length=MAX_DIRECTION_VALUES, description="The direction's values, finite and not all zero."
    )
    model: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The model whose space it lives in (the service's default model when left out).",
    )
    space: DirectionSpace = Field("embedding", description="Where it acts: the CLIP embedding or the latents.")
    name: str | None = Field(None, max_length=200, description="A name to find it by.")

    @model_validator(mode="after")
    def _usable(self) -> Self:
        check_values(self.vector)
        return self


def check_width(values: int, space: str, dims: ModelDimensions, model: str) -> str | None:
    """Why a direction of `values` values does not fit `model`'s `space`, or None when it does."""
    if space == "embedding" and values != dims.embedding:
        return f"an embedding direction of model {model!r} has {dims.embedding} values, not {values}"
    if space == "latent" and values % dims.latent_channels:
        return (
            f"a latent direction of model {model!r} has {dims.latent_channels} values (one per channel) or a "
            f"multiple of it (channels x height x width), not {values}"
        )
    return None


class DirectionResource(Resource):
    """A stored direction."""

    id: str = Field(description='Direction id, `dir_...`; jobs cite it as `{"id": ...}`.')
    name: str | None = Field(None, description="Its name.")
    model: str = Field(description="The model whose space it lives in.")
    space: DirectionSpace = Field(description="Where it acts.")
    dimension: int = Field(ge=1, description="How many values it has.")
    method: str = Field(description="How it was made: `upload` for a vector made elsewhere, else the fit's method.")
    sha256: str = Field(description="Hex SHA-256 of its stored safetensors file (manifests record it).")
    created_at: datetime = Field(description="When it was stored (UTC).")
    fit: dict[str, Any] | None = Field(None, description="A fitted direction's statistics (variance, scores, ...).")
    leakage: dict[str, Any] | None = Field(
        None,
        description="A fitted set's leakage report against its `attributes` (MIG, SAP), or why it is not measured.",
    )
    fitted_by: str | None = Field(None, description="The fit that made it, `job_...`.")


# A page of directions ends at a creation time (epoch seconds, as the index scores it) and an id.
DIRECTION_CURSOR_PATTERN = r"^[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?:dir_[A-Za-z0-9_-]{1,64}$"


class DirectionList(Resource):
    items: list[DirectionResource] = Field(description="The tenant's directions, newest first.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


# --- fitting a set over HTTP ---------------------------------------------------------------------------

FitMethod = Literal["pca", "ica", "supervised", "probe", "contrastive", "text"]
FIT_KIND = "direction_fit"
"""The `kind` a fit's stored document carries: it runs as a job on the model's GPU queue."""
MAX_FIT_IMAGES = 1024
# Images each method needs at the least: a component is a difference of examples; a supervised
# predictor holds some out.
MIN_IMAGES = {"pca": 2, "ica": 2, "supervised": 4, "probe": 2}


class DirectionFitRequest(Strict):
    """`POST /v1/directions` with a `method`: fit a set of directions on the tenant's images.

    It runs as a job on the model's GPU worker queue (it needs the model's encoders): the answer is a
    fit resource with `status` and `progress`, which can be canceled and can send webhooks; once it
    succeeds, its `directions` are stored directions that jobs cite by id."""

    kind: Literal["direction_fit"] = Field("direction_fit", description="Set by the service; leave it out.")
    method: FitMethod = Field(
        description=(
            "`pca` / `ica`: the main / independent axes of the images; `supervised`: the gradient of an "
            "attribute predictor fitted on `labels`; `probe`: a linear probe of `labels`; `contrastive`: the "
            "mean difference of `pairs`; `text`: the difference of two prompts' text embeddings."
        )
    )
    space: DirectionSpace = Field("embedding", description="Where the directions act: CLIP embedding or latents.")
    model: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The model whose encoders fit them (the service's default model when left out).",
    )
    images: list[str] = Field(
        default_factory=list,
        max_length=MAX_FIT_IMAGES,
        description="The examples, as uploaded image assets `asset:<id>` (not with `contrastive` or `text`).",
    )
    labels: list[float] | None = Field(
        None, max_length=MAX_FIT_IMAGES, description="`supervised` and `probe`: one number per image."
    )
    attributes: dict[str, list[float]] | None = Field(
        None,
        max_length=16,
        description=(
            "Named attributes, one number per image (with `contrastive`: per pair's first images, then per "
            "pair's second images), that the leakage report, MIG and SAP are measured against."
        ),
    )
    pairs: list[tuple[str, str]] | None = Field(
        None,
        max_length=MAX_FIT_IMAGES // 2,
        description="`contrastive`: `[with, without]` asset pairs; the direction points from `without` to `with`.",
    )
    text: str | None = Field(None, min_length=1, max_length=300, description="`text`: the prompt to move toward.")
    from_text: str | None = Field(
        None, max_length=300, description="`text`: the prompt to move away from (the empty prompt when left out)."
    )
    k: int = Field(1, ge=1, le=64, description="`pca` / `ica`: how many directions.")
    name: str | None = Field(
        None, max_length=200, description="A name for the set: its direction's, or `<name> <i>` for each of several."
    )
    width: int | None = Field(
        None, ge=64, le=2048, multiple_of=64, description="Latent space: the image width (the model's default)."
    )
    height: int | None = Field(
        None, ge=64, le=2048, multiple_of=64, description="Latent space: the image height (the model's default)."
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of `ica` and of the supervised predictor.")
    webhook: Webhook | None = Field(None, description="Where to announce the fit's start, progress and outcome.")

    @model_validator(mode="after")
    def _method_inputs(self) -> Self:
        for i, ref in enumerate(self.images):
            _asset_ref(ref, f"images[{i}]")
        for i, pair in enumerate(self.pairs or []):
            for j, ref in enumerate(pair):
                _asset_ref(ref, f"pairs[{i}][{j}]")
        m = self.method
        if m in ("contrastive", "text") and self.images:
            raise rule_error("images", "method_inputs", f"`{m}` takes no `images`")
        if m != "contrastive" and self.pairs is not None:
            raise rule_error("pairs", "method_inputs", "only `contrastive` takes `pairs`")
        if m != "text" and (self.text is not None or self.from_text is not None):
            raise rule_error("text", "method_inputs", "only `text` takes `text` and `from_text`")
        if m not in ("supervised", "probe") and self.labels is not None:
            raise rule_error("labels", "method_inputs", "only `supervised` and `probe` take `labels`")
        if m not in ("pca", "ica") and self.k != 1:
            raise rule_error("k", "method_inputs", f"`{m}` fits one direction; `k` is for `pca` and `ica`")
        if m in MIN_IMAGES:
            least = max(MIN_IMAGES[m], self.k + 1)
            if len(self.images) < least:
                raise rule_error(
                    "images", "too_few", f"`{m}` with k={self.k} needs at least {least} images, got {len(self.images)}"
                )
        if m in ("supervised", "probe") and (self.labels is None or len(self.labels) != len(self.images)):
            got = "none" if self.labels is None else len(self.labels)
            raise rule_error("labels", "one_per_image", f"give one label per image ({len(self.images)}), got {got}")
        if m == "contrastive" and not self.pairs:
            raise rule_error("pairs", "required", "`contrastive` needs at least one pair")
        if m == "text":
            if self.text is None:
                raise rule_error("text", "required", "`text` needs the prompt to move toward")
            if self.space != "embedding":
                raise rule_error("space", "text_embedding", "a text direction acts in the `embedding` space")
            if self.attributes:
                raise rule_error("attributes", "method_inputs", "a text direction has no examples to measure")
        examples = 2 * len(self.pairs or []) if m == "contrastive" else len(self.images)
        for attribute, values in (self.attributes or {}).items():
            if len(values) != examples:
                message = f"give one value per image ({examples}), not {len(values)}"
                raise rule_error(f"attributes.{attribute}", "one_per_image", message)
        return self

    def asset_refs(self) -> list[tuple[str, str]]:
        """(field path, `asset:<id>`) of every image the fit reads: `images`, then the pairs' first
        images, then their second images (the order `attributes` follow)."""
        refs = [(f"images[{i}]", ref) for i, ref in enumerate(self.images)]
        for j in (0, 1):
            refs += [(f"pairs[{i}][{j}]", pair[j]) for i, pair in enumerate(self.pairs or [])]
        return refs


def _asset_ref(ref: str, field: str) -> None:
    if not (ref.startswith("asset:") and ASSET_ID.match(ref.removeprefix("asset:"))):
        message = f"an example image must be an uploaded asset `asset:<id>`, got {ref[:80]!r}"
        raise rule_error(field, "asset_ref", message)


class FitUrls(Resource):
    get: str = Field(description="This fit.")
    cancel: str = Field(description="POST here to cancel it.")


class DirectionFitResource(Resource):
    """A fit of a set of directions: a job on the model's GPU queue, and once it succeeds, what it stored."""

    id: str = Field(description="The fit's id, `job_...` (it runs as a job on the model's queue).")
    status: JobStatus = Field(description="queued → running → succeeded | failed | canceled.")
    progress: Progress | None = Field(None, description="Stage `encode` (one step per image), then `fit`.")
    model: str
    request: DirectionFitRequest = Field(description="The fit as accepted.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    directions: list[DirectionResource] = Field(
        default_factory=list,
        description="The directions it stored, in the method's order (once succeeded); one deleted since is left out.",
    )
    report: dict[str, Any] | None = Field(
        None, description="Fit statistics per direction and the leakage report (MIG, SAP) against `attributes`."
    )
    manifest: Artifact | None = Field(None, description="The fit's manifest: inputs' sha256, model, outputs.")
    error: Problem | None = None
    urls: FitUrls | None = Field(None, description="The fit's own URLs.")


class DirectionFitList(Resource):
    """One page of the caller's direction fits, newest first."""

    items: list[DirectionFitResource] = Field(description="Fits on this page.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")
