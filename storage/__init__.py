"""Where results and assets live: one interface, S3 and local-filesystem backends."""

from storage.base import ObjectInfo, ObjectNotFound, Storage, StorageError
from storage.factory import make_storage

__all__ = ["ObjectInfo", "ObjectNotFound", "Storage", "StorageError", "make_storage"]
