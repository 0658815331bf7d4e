"""Reference corpora for geodesic paths: embeddings of pictures like the ones morphed, where the
`geodesic` interpolation keeps its path (`steering.interpolate.KnnPenalty`).

A model's own corpus: the model spec's `geodesic_corpus` names a folder of images (PNG, JPEG, WebP; at
most `MAX_IMAGES`, in name order), encoded once with the model's own image encoder the first time a
job needs them and kept with the loaded model, or a safetensors file holding an `embeddings` tensor
(N, D). A job's own corpus (its `corpus`, typically the tenant's image assets) is encoded through the
loaded model's `EmbeddingCache`, so a picture cited again is not encoded again.
"""

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import PIL.Image
import torch
from safetensors.torch import load_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_IMAGES = 1024


class EmbeddingCorpus:
    """The embeddings of one corpus source, computed once (`encoded` counts the images encoded)."""

    def __init__(self, source: str | Path) -> None:
        self.source = Path(source).expanduser()
        if not self.source.exists():
            raise ValueError(f"`geodesic_corpus` {self.source} does not exist")
        self.encoded = 0
        self._embeddings: torch.Tensor | None = None
        self._lock = threading.Lock()

    def embeddings(self, pipe: object) -> torch.Tensor:
        """(N, D) float32 on the CPU: read or encoded at the first call, then the same tensor."""
        with self._lock:
            if self._embeddings is None:
                self._embeddings = self._load(pipe)
            return self._embeddings

    def _load(self, pipe: object) -> torch.Tensor:
        if self.source.is_file():
            tensors = load_file(str(self.source))
            if "embeddings" not in tensors or tensors["embeddings"].dim() != 2:
                raise ValueError(f"`geodesic_corpus` {self.source} must hold an `embeddings` tensor (N, D)")
            return tensors["embeddings"].float().cpu()
        paths = sorted(p for p in self.source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_IMAGES]
        rows = []
        for path in paths:
            with PIL.Image.open(path) as image:
                rows.append(pipe.encode_image_embedding(image.convert("RGB")).float().cpu())  # type: ignore[attr-defined]
            self.encoded += 1
        if not rows:
            raise ValueError(f"`geodesic_corpus` {self.source} holds no images")
        return torch.stack(rows)


class EmbeddingCache:
    """CLIP image embeddings one loaded model has made, by the picture's pixels (their sha256 with the
    mode and size): a corpus image cited by many jobs is encoded once. `encoded` counts the encodings;
    past `capacity` pictures the least recently used are dropped."""

    def __init__(self, capacity: int = 4 * MAX_IMAGES) -> None:
        self.capacity = capacity
        self.encoded = 0
        self._rows: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(image: PIL.Image.Image) -> str:
        digest = hashlib.sha256(image.tobytes())
        digest.update(f"{image.mode}{image.size}".encode())
        return digest.hexdigest()

    def embeddings(self, pipe: object, images: list[PIL.Image.Image]) -> tuple[torch.Tensor, int]:
        """(N, D) float32 on the CPU for `images`, and how many of them were encoded now."""
        rows, fresh = [], 0
        for image in images:
            key = self.key(image)
            with self._lock:
                row = self._rows.get(key)
                if row is not None:
                    self._rows.move_to_end(key)
            if row is None:
                row = pipe.encode_image_embedding(image.convert("RGB")).float().cpu()  # type: ignore[attr-defined]
                fresh += 1
                with self._lock:
                    self.encoded += 1
                    self._rows[key] = row
                    while len(self._rows) > self.capacity:
                        self._rows.popitem(last=False)
            rows.append(row)
        return torch.stack(rows), fresh
