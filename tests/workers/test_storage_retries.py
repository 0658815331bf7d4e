"""Uploads retried while storage fails: a job's result files and a fit's directions (bytes) alike are
stored once storage answers again within the retry budget, and past it the upload fails saying how
long storage was unreachable."""

from pathlib import Path

import pytest

from storage.base import StorageError
from storage.local import LocalStorage
from workers.errors import StorageUnavailable
from workers.job_runner import WorkerDeps, put_with_retries


class FailingFirst(LocalStorage):
    """Local storage whose first `failures` puts fail as an unreachable server's would."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root, secret="s")
        self.failures, self.attempts = failures, 0

    def put(self, key, body, content_type):  # type: ignore[no-untyped-def]
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StorageError("connection refused")
        return super().put(key, body, content_type)


def deps(storage: LocalStorage, budget_s: float) -> WorkerDeps:
    return WorkerDeps(store=None, storage=storage, registry=None, storage_retry_budget_s=budget_s)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [b"direction bytes", "file"])
def test_an_upload_is_stored_once_storage_answers_again(tmp_path: Path, body: bytes | str) -> None:
    storage = FailingFirst(tmp_path / "objects", failures=2)
    if body == "file":
        (tmp_path / "video.mp4").write_bytes(b"video bytes")
        body = tmp_path / "video.mp4"
    info = put_with_retries(deps(storage, 10.0), "directions/t/dir_1.safetensors", body, "application/octet-stream")
    assert storage.attempts == 3  # two failures, waited 0.5 s then 1 s
    expected = body.read_bytes() if isinstance(body, Path) else body
    assert storage.get("directions/t/dir_1.safetensors") == expected and info.size == len(expected)


def test_past_the_budget_the_upload_fails_saying_why(tmp_path: Path) -> None:
    storage = FailingFirst(tmp_path / "objects", failures=100)
    with pytest.raises(StorageUnavailable, match=r"unreachable for 1 s \(2 attempts, retry budget 1 s\)"):
        put_with_retries(deps(storage, 1.0), "directions/t/dir_1.safetensors", b"x", "application/octet-stream")
    assert storage.attempts == 2
