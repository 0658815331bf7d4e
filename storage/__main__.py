"""`python -m storage ensure-bucket`: create the S3 bucket if it is missing (compose's bucket step).

Reads the same variables as the API and the workers (`VSTEER_STORAGE_S3_BUCKET`,
`VSTEER_STORAGE_S3_ENDPOINT_URL`, `VSTEER_STORAGE_S3_REGION`, `VSTEER_STORAGE_S3_ACCESS_KEY_ID`,
`VSTEER_STORAGE_S3_SECRET_ACCESS_KEY`, `VSTEER_RETENTION_DAYS` for the lifecycle rule that expires result
files); retries until the server answers or `--wait` runs out.
"""

import argparse
import logging
import os
import sys
import time

from storage.base import StorageError
from storage.s3 import S3Storage

log = logging.getLogger("storage")


def ensure_bucket(store: S3Storage, wait_s: float, retention_days: int = 0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            store.ensure_bucket(retention_days)
            store.ping()
            return
        except StorageError as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("waiting for S3 at %s: %s", store.endpoint_url, exc)
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m storage")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("ensure-bucket", help="create the bucket if it does not exist")
    cmd.add_argument("--bucket", default=env("VSTEER_STORAGE_S3_BUCKET"))
    cmd.add_argument("--endpoint-url", default=env("VSTEER_STORAGE_S3_ENDPOINT_URL"))
    cmd.add_argument("--region", default=env("VSTEER_STORAGE_S3_REGION", "us-east-1"))
    cmd.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server")
    cmd.add_argument(
        "--retention-days",
        type=int,
        default=int(env("VSTEER_RETENTION_DAYS") or 30),
        help="days result files are kept (the bucket's lifecycle rule; 0: no rule)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.bucket:
        parser.error("--bucket or VSTEER_STORAGE_S3_BUCKET is required")
    store = S3Storage(
        args.bucket,
        endpoint_url=args.endpoint_url,
        region=args.region,
        access_key_id=env("VSTEER_STORAGE_S3_ACCESS_KEY_ID"),
        secret_access_key=env("VSTEER_STORAGE_S3_SECRET_ACCESS_KEY"),
    )
    try:
        ensure_bucket(store, args.wait, args.retention_days)
    except StorageError as exc:
        log.error("%s", exc)
        return 1
    log.info("bucket %s is ready at %s", args.bucket, args.endpoint_url or "AWS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
