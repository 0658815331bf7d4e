"""Retention of result files: the bucket's lifecycle rule (real S3 endpoint) and the local sweep."""

import os
import time

import pytest
from botocore.exceptions import ClientError

from storage.keys import RETAINED_PREFIXES
from storage.local import LocalStorage
from storage.s3 import S3Storage


def test_the_bucket_step_sets_an_expiry_rule_for_results_only(s3_storage: S3Storage) -> None:
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3_storage.client.get_bucket_lifecycle_configuration(Bucket=s3_storage.bucket)  # 0 days: no rule
    s3_storage.ensure_bucket(retention_days=7)  # an existing bucket gets the rule too
    rules = s3_storage.client.get_bucket_lifecycle_configuration(Bucket=s3_storage.bucket)["Rules"]
    assert sorted((r["Filter"]["Prefix"], r["Expiration"]["Days"], r["Status"]) for r in rules) == [
        ("comparisons/", 7, "Enabled"),
        ("jobs/", 7, "Enabled"),
    ]
    assert RETAINED_PREFIXES == ("jobs/", "comparisons/")  # uploads (`assets/`) and directions are kept


def test_the_local_sweep_deletes_old_results_and_keeps_uploads(local_storage: LocalStorage) -> None:
    for key in ("jobs/t/job_a/video.mp4", "jobs/t/job_b/video.mp4", "assets/t/ast_a", "comparisons/t/cmp_a/table.json"):
        local_storage.put(key, b"x", "application/octet-stream")
    old = time.time() - 10 * 86400
    for key in ("jobs/t/job_a/video.mp4", "assets/t/ast_a", "comparisons/t/cmp_a/table.json"):
        os.utime(local_storage.path_for(key), (old, old))

    assert local_storage.expire(RETAINED_PREFIXES, 7 * 86400) == 2
    assert not local_storage.exists("jobs/t/job_a/video.mp4") and local_storage.info("jobs/t/job_a/video.mp4") is None
    assert local_storage.exists("jobs/t/job_b/video.mp4")  # younger than the retention
    assert local_storage.exists("assets/t/ast_a")  # uploads are not results
    assert not local_storage.path_for("jobs/t/job_a").exists()  # its emptied folder went too
    assert local_storage.expire(RETAINED_PREFIXES, 7 * 86400) == 0
