"""Storage backends under test: a tmp folder, and a real S3 HTTP endpoint (moto in server mode)."""

import uuid
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from storage.local import LocalStorage
from storage.s3 import S3Storage

SECRET = "test-file-secret"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_storage(moto_endpoint: str) -> S3Storage:
    store = S3Storage(
        f"test-{uuid.uuid4().hex[:12]}",
        endpoint_url=moto_endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        max_attempts=2,
    )
    store.ensure_bucket()
    return store


@pytest.fixture
def local_storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "objects", secret=SECRET, base_url="http://files.test")


@pytest.fixture(params=["local", "s3"])
def storage(request):
    return request.getfixturevalue(f"{request.param}_storage")
