"""Objects as files in a folder: the embedded default, for one host and for tests.

The GET URLs point at the API's ``/v1/files/<key>?expires=<unix time>&sig=<hex>`` route, signed with
HMAC-SHA256 over the key and the expiry time; the route calls :func:`verify_file_token` and serves the
file from :meth:`LocalStorage.path_for`. Content type and SHA-256 live beside the data under
``<root>/.meta/<key>.json`` (a key part may not start with a dot, so no key can reach them).
"""

import hashlib
import hmac
import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from storage.base import Body, ObjectInfo, ObjectNotFound, Spooled, StorageError, check_expiry
from storage.keys import check_key

FILES_ROUTE = "/v1/files/"
_META_DIR = ".meta"


def _secret_bytes(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not raw:
        raise ValueError("the file URL signing secret must not be empty")
    return raw


def file_signature(key: str, expires_at: int, secret: str | bytes) -> str:
    """Hex HMAC-SHA256 of ``<key>\\n<expires_at>`` with ``secret``."""
    message = f"{key}\n{int(expires_at)}".encode()
    return hmac.new(_secret_bytes(secret), message, hashlib.sha256).hexdigest()


def sign_file_url(key: str, expires_at: int, secret: str | bytes, base_url: str = "") -> str:
    """``<base_url>/v1/files/<key>?expires=<expires_at>&sig=<hex>``; relative when ``base_url`` is empty."""
    check_key(key)
    sig = file_signature(key, expires_at, secret)
    return f"{base_url.rstrip('/')}{FILES_ROUTE}{quote(key)}?expires={int(expires_at)}&sig={sig}"


def verify_file_token(key: str, expires: int | str, sig: str, secret: str | bytes, *, now: float | None = None) -> bool:
    """True when ``sig`` signs ``key`` and ``expires`` with ``secret`` and ``expires`` is not past."""
    try:
        expires_at = int(expires)
        check_key(key)
    except (TypeError, ValueError):
        return False
    if expires_at < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(file_signature(key, expires_at, secret), str(sig))


class LocalStorage:
    """A folder of objects; see the module docstring for the URL scheme."""

    def __init__(self, root: str | Path, *, secret: str | bytes, base_url: str = "") -> None:
        self.root = Path(root).resolve()
        self.secret = _secret_bytes(secret)
        self.base_url = base_url

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (it may not exist)."""
        return self.root / check_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META_DIR / f"{check_key(key)}.json"

    def put(self, key: str, data: Body, content_type: str) -> ObjectInfo:
        target = self.path_for(key)
        with Spooled(data) as body:
            _atomic_write(target, body.copy_to)
            info = ObjectInfo(key=key, size=body.size, content_type=content_type, sha256=body.sha256)
        meta = json.dumps({"content_type": content_type, "sha256": info.sha256, "size": info.size}).encode()
        _atomic_write(self._meta_path(key), lambda f: f.write(meta))
        return info

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def info(self, key: str) -> ObjectInfo | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        size = path.stat().st_size
        try:
            meta = json.loads(self._meta_path(key).read_bytes())
        except (FileNotFoundError, ValueError):
            meta = {}
        # Metadata of an older write of the same key does not describe this content.
        sha256 = meta.get("sha256") if meta.get("size") == size else None
        return ObjectInfo(key=key, size=size, content_type=meta.get("content_type"), sha256=sha256)

    def presigned_url(self, key: str, expires_s: int) -> str:
        expires_at = int(time.time()) + check_expiry(expires_s)
        return sign_file_url(key, expires_at, self.secret, self.base_url)

    def delete(self, key: str) -> None:
        for path in (self.path_for(key), self._meta_path(key)):
            path.unlink(missing_ok=True)

    def expire(self, prefixes: tuple[str, ...], older_than_s: float, now: float | None = None) -> int:
        """Delete the objects under `prefixes` written more than `older_than_s` ago (the local
        counterpart of a bucket's lifecycle rule); returns how many went."""
        cutoff = (time.time() if now is None else now) - older_than_s
        gone = 0
        for prefix in prefixes:
            folder = self.root / check_key(prefix.rstrip("/"))
            for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
                if path.is_file() and path.stat().st_mtime < cutoff:
                    self.delete(path.relative_to(self.root).as_posix())
                    gone += 1
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
        return gone

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".ping-"):
                pass
        except OSError as exc:
            raise StorageError(f"local storage at {self.root} is not writable: {exc}") from exc


def _atomic_write(target: Path, write) -> None:  # type: ignore[no-untyped-def]
    """Write through a temporary file in the same folder and rename it over ``target``.

    Readers see the old object or the new one, never half a file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
