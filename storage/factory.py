"""Choose a storage backend by name: ``local`` (a folder) or ``s3`` (any S3-compatible server)."""

from typing import Any

from storage.base import Storage


def make_storage(kind: str, **settings: Any) -> Storage:
    """Build the backend ``kind`` with its keyword settings.

    ``local``: ``root``, ``secret``, ``base_url`` (see :class:`storage.local.LocalStorage`).
    ``s3``: ``bucket``, ``endpoint_url``, ``public_endpoint_url``, ``region``, ``access_key_id``,
    ``secret_access_key``, ``max_attempts``, … (see :class:`storage.s3.S3Storage`).
    """
    if kind == "local":
        from storage.local import LocalStorage

        return LocalStorage(**settings)
    if kind == "s3":
        # boto3 is imported only when S3 is used.
        from storage.s3 import S3Storage

        return S3Storage(**settings)
    raise ValueError(f"storage kind must be 'local' or 's3', got {kind!r}")
