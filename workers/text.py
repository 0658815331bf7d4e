"""Text directions: unCLIP's "text diffs" (Ramesh et al. 2022) in CLIP's joint text-image space.

d = normalize(E_text(text) − E_text(from_text)), where E_text is the text tower's projected,
L2-normalised embedding, as CLIP compares texts with images. SVD conditions on the image tower's
projected embedding of the same joint space (OpenCLIP ViT-H/14), so a text difference is a direction
in the `embedding` steering space; only the text tower that was trained with that image tower shares
the space, and its projection width must equal the image embedding's.

A model spec names the tower in `text_encoder`: a local folder (or a hub id already in the local hub
cache; never downloaded) holding a `CLIPTextModelWithProjection` and its `CLIPTokenizer`, at its root
(as a CLIP checkpoint keeps them) or in `text_encoder/` and `tokenizer/` (a diffusers layout, as the
tiny model keeps them beside its pipeline).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from workers.errors import JobInputError, ModelUnavailableError

if TYPE_CHECKING:
    from workers.models import LoadedModel

# Two prompts whose unit embeddings are closer than this have no direction between them: the same
# tokens (CLIP lowercases and truncates), or a difference below float32's resolution after the cast.
SAME_EMBEDDING = 1e-6


@dataclass
class TextEncoder:
    """A CLIP text tower and its tokenizer, warm beside the pipeline whose image embedding it shares."""

    model: CLIPTextModelWithProjection
    tokenizer: CLIPTokenizer
    source: str
    weight_hash: str

    @property
    def width(self) -> int:
        """Width of the projected text embedding (the joint space)."""
        return int(self.model.config.projection_dim)

    @property
    def context_length(self) -> int:
        """Tokens per prompt: the tokenizer's length, within the model's positions (77 for CLIP)."""
        return min(int(self.tokenizer.model_max_length), int(self.model.config.max_position_embeddings))

    @torch.no_grad()
    def embed(self, prompts: list[str]) -> torch.Tensor:
        """(N, D) float32 unit vectors E_text(prompt): the projection of the end-of-text token's state.

        Prompts are padded and truncated to `context_length`, as CLIP was trained; the causal mask
        keeps the padding out of the pooled token."""
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=self.context_length, truncation=True, return_tensors="pt"
        )
        embeds = self.model(input_ids=tokens.input_ids.to(self.model.device)).text_embeds
        embeds = embeds.to(torch.float32)
        return embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "weight_hash": self.weight_hash, "width": self.width}


def text_difference(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """normalize(normalize(target) − normalize(source)): unCLIP's text diff of two text embeddings.

    Args:
        target, source: ``(D,)`` text embeddings (any norm).

    Returns:
        ``(D,)`` unit vector in float32. Raises ValueError when the two embeddings are the same
        direction (a zero difference has no direction).
    """
    a = target.to(torch.float32) / torch.linalg.vector_norm(target.to(torch.float32))
    b = source.to(torch.float32) / torch.linalg.vector_norm(source.to(torch.float32))
    diff = a - b
    norm = float(torch.linalg.vector_norm(diff))
    if norm <= SAME_EMBEDDING:
        raise ValueError(f"the two texts have the same embedding (difference {norm:.1e}): there is no direction")
    return diff / norm


def text_direction(model: "LoadedModel", text: str, from_text: str) -> torch.Tensor:
    """d = normalize(E_text(text) − E_text(from_text)) on `model`'s text encoder: a (D,) float32 unit
    vector in its image-embedding space, on the CPU.

    Raises JobInputError naming `text` (the model has no text encoder) or `from_text` (the two texts
    give no direction); callers prefix the field with where the texts sit in their request."""
    encoder = model.text
    if encoder is None:
        raise JobInputError(
            "text",
            f"model {model.spec.name!r} has no text encoder (text_encoder_missing): "
            "configure `text_encoder` in its model spec",
        )
    if text == from_text:
        raise JobInputError("from_text", f"`text` and `from_text` are the same ({text!r}): there is no direction")
    target, source = encoder.embed([text, from_text]).cpu()
    try:
        return text_difference(target, source)
    except ValueError as exc:
        raise JobInputError("from_text", f"{exc} ({text!r} and {from_text!r})") from exc


def text_folders(folder: Path) -> tuple[Path, Path]:
    """Where a text encoder folder keeps the model and the tokenizer: `text_encoder/` and `tokenizer/`
    when it has them (a diffusers layout), else its root (a CLIP checkpoint)."""
    model = folder / "text_encoder" if (folder / "text_encoder" / "config.json").is_file() else folder
    tokenizer = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
    return model, tokenizer


def has_text_encoder(folder: Path) -> bool:
    """Whether a pipeline folder keeps a text encoder beside it (`text_encoder/` and `tokenizer/`)."""
    return (folder / "text_encoder" / "config.json").is_file() and (folder / "tokenizer").is_dir()


def resolve_text_folder(name: str, source: str, hf_cache: str | None = None) -> Path:
    """The local folder of a spec's `text_encoder`; never downloads."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    if local.is_absolute() or source.startswith("."):
        raise ModelUnavailableError(name, f"model {name!r}: `text_encoder` folder {local} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        cache = hf_cache or "~/.cache/huggingface"
        raise ModelUnavailableError(
            name,
            f"model {name!r}: the `text_encoder` {source} is not in the local hub cache ({cache}). Download it "
            f"where there is network access with `hf download {source}` and copy the cache here, or give "
            "`text_encoder` a local folder holding a CLIPTextModelWithProjection and its CLIPTokenizer.",
        ) from exc


def load_text_encoder(
    name: str,
    source: str,
    *,
    image_width: int,
    device: str,
    dtype: torch.dtype,
    hf_cache: str | None = None,
) -> TextEncoder:
    """Load model `name`'s `text_encoder` from local files; refuses a tower whose projection is not
    `image_width` wide (it cannot share the image encoder's joint space)."""
    from workers.models import weight_hash

    folder = resolve_text_folder(name, source, hf_cache)
    model_folder, tokenizer_folder = text_folders(folder)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
        model = CLIPTextModelWithProjection.from_pretrained(model_folder, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            name, f"model {name!r}: `text_encoder` {folder} holds no CLIP text model and tokenizer ({exc})"
        ) from exc
    width = int(model.config.projection_dim)
    if width != image_width:
        raise ModelUnavailableError(
            name,
            f"model {name!r}: `text_encoder` ({source}) projects to {width} dimensions, the image encoder's "
            f"embedding has {image_width}: a text direction must live in the image embedding's joint space",
        )
    model.to(device).eval()
    return TextEncoder(model, tokenizer, source, weight_hash(model_folder))
