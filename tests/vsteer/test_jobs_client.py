"""Job conventions through the Python client against the API under uvicorn on a real Redis: the typed
resource's new fields, and `delete` on Client and AsyncClient."""

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from jobstate.store import JobStore
from service.app import create_app
from tests.servers import serve_in_thread
from tests.service.conftest import KEY_A, KEY_B, make_settings, png
from vsteer.client import AsyncClient, Client, VsteerError


@pytest.fixture
def server_url(tmp_path: Path, redis_url: str) -> Iterator[str]:
    server = serve_in_thread(create_app(make_settings(tmp_path, redis_url)))
    try:
        yield server.url
    finally:
        server.stop()


def test_client_reads_new_fields_and_deletes(server_url: str, tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "a.png").write_bytes(png())
    with Client(server_url, KEY_A) as vs:
        image = vs.upload_asset(tmp_path / "a.png")
        job = vs.submit({"image": f"asset:{image.id}"})
        assert job.queue_position == 0 and job.urls is not None and job.urls.get.endswith(f"/v1/jobs/{job.id}")
        with pytest.raises(VsteerError) as active:
            vs.delete(job.id)
        assert active.value.status == 409
        vs.cancel(job.id)
        with Client(server_url, KEY_B) as other, pytest.raises(VsteerError) as theirs:
            other.delete(job.id)
        assert theirs.value.status == 404
        vs.delete(job.id)
        with pytest.raises(VsteerError) as gone:
            vs.get(job.id)
        assert gone.value.status == 404


def test_async_client_deletes(server_url: str, tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "a.png").write_bytes(png())

    async def main() -> None:
        async with AsyncClient(server_url, KEY_A) as vs:
            image = await vs.upload_asset(tmp_path / "a.png")
            job = await vs.submit({"image": f"asset:{image.id}"})
            store = JobStore.from_url(redis_url)
            store.mark_running(job.id)
            store.progress(job.id, "denoise", 5, 10)
            assert (await vs.get(job.id)).progress.percent == 45.0  # type: ignore[union-attr]
            store.mark_canceled(job.id)
            await vs.delete(job.id)
            with pytest.raises(VsteerError) as gone:
                await vs.get(job.id)
            assert gone.value.status == 404

    anyio.run(main)
