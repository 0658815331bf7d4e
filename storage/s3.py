"""Objects in any S3-compatible server (AWS S3, SeaweedFS, Garage, moto) through boto3.

- ``endpoint_url`` selects the server; path-style addressing and SigV4, which every S3-compatible
  server understands (virtual-hosted buckets need DNS the server usually does not have).
- botocore's ``standard`` retry mode (exponential backoff with jitter, retries throttling and
  transient errors) with a configurable number of attempts.
- Uploads go through boto3's transfer manager: multipart above ``multipart_threshold`` (8 MiB).
- Every object is stored with its ``ContentType`` and its SHA-256 as user metadata (a multipart
  ETag is not a checksum of the content).
- A presigned URL signs the host name, so URLs handed to clients are signed by a second client
  configured with the *public* endpoint when the servers reach S3 under another name.
"""

from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.base import Body, ObjectInfo, ObjectNotFound, Spooled, StorageError, check_expiry
from storage.keys import RETAINED_PREFIXES, check_key

MULTIPART_THRESHOLD = 8 * 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class S3Storage:
    """One bucket of an S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_attempts: int = 5,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_THRESHOLD,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if max_attempts < 1:
            raise ValueError(f"`max_attempts` must be at least 1, got {max_attempts}")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            # `total_max_attempts` counts the first try; botocore's `max_attempts` would count retries only.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)
        # Presigning is local computation; the public client never opens a connection.
        self.presign_client = (
            session.client("s3", endpoint_url=public_endpoint_url, config=config)
            if public_endpoint_url and public_endpoint_url != endpoint_url
            else self.client
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize, use_threads=True
        )

    def put(self, key: str, data: Body, content_type: str) -> ObjectInfo:
        check_key(key)
        extra: dict[str, Any] = {"ContentType": content_type}
        with Spooled(data) as body:
            extra["Metadata"] = {"sha256": body.sha256}
            try:
                if body.path is not None:
                    self.client.upload_file(str(body.path), self.bucket, key, ExtraArgs=extra, Config=self.transfer)
                else:
                    self.client.upload_fileobj(body.open(), self.bucket, key, ExtraArgs=extra, Config=self.transfer)
            except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
                # The transfer manager wraps a server's error answer in S3UploadFailedError.
                raise StorageError(f"upload of {key!r} to bucket {self.bucket!r} failed: {exc}") from exc
            return ObjectInfo(key=key, size=body.size, content_type=content_type, sha256=body.sha256)

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except ClientError as exc:
            if _is_not_found(exc):
                raise ObjectNotFound(key) from None
            raise StorageError(f"download of {key!r} from bucket {self.bucket!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"download of {key!r} from bucket {self.bucket!r} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def info(self, key: str) -> ObjectInfo | None:
        check_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise StorageError(f"HEAD of {key!r} in bucket {self.bucket!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"HEAD of {key!r} in bucket {self.bucket!r} failed: {exc}") from exc
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            content_type=head.get("ContentType"),
            sha256=head.get("Metadata", {}).get("sha256"),
        )

    def presigned_url(self, key: str, expires_s: int) -> str:
        check_key(key)
        return self.presign_client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=check_expiry(expires_s)
        )

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"delete of {key!r} in bucket {self.bucket!r} failed: {exc}") from exc

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            where = self.endpoint_url or "AWS"
            raise StorageError(f"bucket {self.bucket!r} at {where} is not reachable: {exc}") from exc

    def ensure_bucket(self, retention_days: int = 0) -> None:
        """Create the bucket when it does not exist (local stacks and tests; production provisions it).
        With `retention_days` > 0, set its lifecycle rule: result files expire that many days after
        they were written (`RETAINED_PREFIXES`; uploads are kept)."""
        self._create_bucket()
        if retention_days > 0:
            self.set_retention(retention_days)

    def set_retention(self, days: int) -> None:
        """One lifecycle rule per retained prefix: objects expire `days` after they were written."""
        rules = [
            {
                "ID": f"vsteer-retention-{prefix.rstrip('/')}",
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "Expiration": {"Days": days},
            }
            for prefix in RETAINED_PREFIXES
        ]
        try:
            self.client.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot set the lifecycle rule of bucket {self.bucket!r}: {exc}") from exc

    def _create_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if not _is_not_found(exc):
                raise StorageError(f"bucket {self.bucket!r} is not usable: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"bucket {self.bucket!r} is not reachable: {exc}") from exc
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StorageError(f"cannot create bucket {self.bucket!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot create bucket {self.bucket!r}: {exc}") from exc


def _is_not_found(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code")) in _NOT_FOUND or status == 404
