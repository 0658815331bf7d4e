"""The storage interface: what the service and the workers need from wherever objects live.

Callers depend on :class:`Storage`; :func:`storage.factory.make_storage` picks the backend
(``storage.s3`` for any S3-compatible server, ``storage.local`` for a folder).
"""

import hashlib
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

Body = bytes | BinaryIO | Path

# Longest expiry SigV4 allows for a presigned URL (7 days); the local backend keeps the same rule.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_CHUNK = 1024 * 1024


class StorageError(Exception):
    """The backend failed (unreachable, refused, misconfigured)."""


class ObjectNotFound(StorageError, KeyError):
    """No object under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no object under key {self.key!r}"


@dataclass(frozen=True)
class ObjectInfo:
    """What is known of a stored object."""

    key: str
    size: int
    content_type: str | None
    sha256: str | None
    """Hex SHA-256 of the content, recorded at upload (None for objects written by other tools)."""

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "bytes": self.size, "content_type": self.content_type, "sha256": self.sha256}


@runtime_checkable
class Storage(Protocol):
    """A flat key → bytes store with content types, checksums and time-limited GET URLs."""

    def put(self, key: str, data: Body, content_type: str) -> ObjectInfo:
        """Store ``data`` (bytes, a binary file object read to its end, or a file path) under ``key``."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; raises :class:`ObjectNotFound`."""
        ...

    def exists(self, key: str) -> bool: ...

    def info(self, key: str) -> ObjectInfo | None:
        """Size, content type and SHA-256 of the object, or None when there is none."""
        ...

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A URL that GETs the object without credentials for ``expires_s`` seconds."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def ping(self) -> None:
        """Raise :class:`StorageError` unless the backend is reachable and usable."""
        ...


def check_expiry(expires_s: int) -> int:
    valid = isinstance(expires_s, int) and not isinstance(expires_s, bool)
    if not valid or not 1 <= expires_s <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"`expires_s` must be an integer between 1 and {MAX_PRESIGN_SECONDS}, got {expires_s!r}")
    return expires_s


class Spooled:
    """A body as a seekable file with its size and SHA-256 known, ready for upload.

    Paths are hashed in place; bytes are wrapped; other file objects are copied into a temporary
    file (in memory while small) so that they can be hashed first and then streamed.
    """

    def __init__(self, data: Body) -> None:
        self._owned: BinaryIO | None = None
        self.path: Path | None = None
        if isinstance(data, Path):
            self.path = data
            self.size, self.sha256 = _hash_path(data)
            return
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            self._owned = io.BytesIO(raw)
            self.size, self.sha256 = len(raw), hashlib.sha256(raw).hexdigest()
            return
        spool = tempfile.SpooledTemporaryFile(max_size=16 * _CHUNK)  # noqa: SIM115 - closed in close()
        digest = hashlib.sha256()
        size = 0
        while chunk := data.read(_CHUNK):
            digest.update(chunk)
            spool.write(chunk)
            size += len(chunk)
        spool.seek(0)
        self._owned = spool  # type: ignore[assignment]
        self.size, self.sha256 = size, digest.hexdigest()

    def open(self) -> BinaryIO:
        """A file object positioned at the start of the body."""
        if self.path is not None:
            self._owned = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        assert self._owned is not None
        self._owned.seek(0)
        return self._owned

    def copy_to(self, target: BinaryIO) -> None:
        shutil.copyfileobj(self.open(), target, _CHUNK)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> "Spooled":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hash_path(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
