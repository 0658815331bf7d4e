"""Stored directions: vectors a tenant uploads once and jobs cite as `{"id": "dir_..."}`.

A direction acts in the CLIP image-embedding space (a vector as wide as the model's embedding) or on
the latents (one value per latent channel, or one per latent element at the job's size). What a model
accepts is `ModelDimensions`: the service knows it for the built-in models and from its settings for
others, and checks an upload against it.
"""

import math
from datetime import datetime
from typing import Literal, Self

from pydantic import Field, model_validator

from api_schemas.job import Strict, rule_error
from api_schemas.resources import ModelDimensions, Resource

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
    model: str = Field(min_length=1, max_length=64, description="The model whose space it lives in.")
    space: DirectionSpace = Field("embedding", description="Where it acts: the CLIP embedding or the latents.")
    name: str | None = Field(None, max_length=200, description="A name to find it by.")

    @model_validator(mode="after")
    def _usable(self) -> Self:
        check_values(self.vector)
        return self


def check_values(values: list[float]) -> None:
    """Finite, and not all zero (a zero direction moves nothing and cannot be normalised)."""
    if not all(math.isfinite(v) for v in values):
        raise rule_error("vector", "finite", "every value of a direction must be finite (no NaN or infinity)")
    if not any(values):
        raise rule_error("vector", "not_zero", "a direction of all zeros moves nothing")


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
    method: str = Field(description="How it was made: `upload` for a vector made elsewhere.")
    sha256: str = Field(description="Hex SHA-256 of its stored safetensors file (manifests record it).")
    created_at: datetime = Field(description="When it was stored (UTC).")


class DirectionList(Resource):
    items: list[DirectionResource] = Field(description="The tenant's directions, newest first.")
