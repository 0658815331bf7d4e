"""The files a job produces, declared once: name, file name under the job's folder, content type.

The engine writes them under these file names, the job runner stores them under the job's keys,
the job record and the job resource list them by name, and the client saves them under the same
file names. A new artifact is one line here and one field in `JobResult`.
"""

from dataclasses import dataclass
from pathlib import PurePosixPath

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".json": "application/json",
    ".npy": "application/octet-stream",
    ".safetensors": "application/octet-stream",
}
OCTET_STREAM = "application/octet-stream"


def content_type_for(file_name: str) -> str:
    """The content type of a file, from its extension (octet-stream when unknown)."""
    return CONTENT_TYPES.get(PurePosixPath(file_name).suffix.lower(), OCTET_STREAM)


def extension_for(content_type: str) -> str:
    """The extension a file of `content_type` is saved with, without the dot (`bin` when unknown)."""
    return next((ext[1:] for ext, known in CONTENT_TYPES.items() if known == content_type), "bin")


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of result file. `file_name` may hold `{ext}` (the preview's format) or `{index}` (a
    sweep's clip, of which there is a list: `many`)."""

    name: str
    file_name: str
    description: str
    many: bool = False

    def file(self, *, ext: str | None = None, index: int | None = None) -> str:
        """The file name under the job's folder (`video.mp4`, `preview.webp`, `clips/3.mp4`)."""
        return self.file_name.format(ext=ext, index=index)

    def artifact_name(self, index: int | None = None) -> str:
        """The name a file of this kind goes by in result listings (`video`, `clips/3`)."""
        return f"{self.name}/{index}" if self.many else self.name


ARTIFACTS: tuple[ArtifactKind, ...] = (
    ArtifactKind("video", "video.mp4", "The video (H.264 in MP4); for a sweep, the side-by-side video."),
    ArtifactKind("poster", "poster.png", "A still frame (PNG)."),
    ArtifactKind("preview", "preview.{ext}", "An animated preview (GIF or WebP), if requested."),
    ArtifactKind("manifest", "manifest.json", "Request, resolved defaults, seeds, model, versions, timings."),
    ArtifactKind("frames", "frames.npy", "Raw frames (float32, F x H x W x 3 in [0, 1]), if `output.raw`."),
    ArtifactKind("clips", "clips/{index}.mp4", "For a sweep: one video per clip, in order.", many=True),
)
ARTIFACT_KINDS = {kind.name: kind for kind in ARTIFACTS}
SINGLE_ARTIFACTS = tuple(kind.name for kind in ARTIFACTS if not kind.many)
LISTED_ARTIFACTS = tuple(kind.name for kind in ARTIFACTS if kind.many)


def split_artifact_name(name: str) -> tuple[ArtifactKind, int | None]:
    """`video` → (video, None); `clips/3` → (clips, 3). KeyError for an unknown name."""
    kind_name, _, index = name.partition("/")
    kind = ARTIFACT_KINDS[kind_name]
    if kind.many != bool(index) or (index and not index.isdigit()):
        raise KeyError(name)
    return kind, int(index) if index else None
