"""Fixtures shared by the whole suite: the tiny SVD (built once per session) and test images."""

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import PIL.Image
import pytest

from vsteer.pictures import png_bytes, smooth_picture

if TYPE_CHECKING:
    from tests.servers import RedisServer


def make_image(seed: int, size: tuple[int, int] = (80, 64)) -> PIL.Image.Image:
    """A smooth random picture (`vsteer.pictures.smooth_picture`) at the tests' default size."""
    return smooth_picture(seed, size)


def data_uri(image: PIL.Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from workers.tiny import save_tiny_svd

    return save_tiny_svd(tmp_path_factory.mktemp("models") / "tiny-svd")


@pytest.fixture(scope="session")
def registry(tiny_model_dir: Path):
    from workers.models import ModelRegistry, ModelSpec
    from workers.tiny import TINY_DEFAULTS
    from workers.toy import TOY_DEFAULTS, TOY_FOLDER

    spec = ModelSpec(name="tiny", source=str(tiny_model_dir), text_encoder=str(tiny_model_dir), **TINY_DEFAULTS)
    toy = ModelSpec(name="toy", source=str(TOY_FOLDER), **TOY_DEFAULTS)  # type: ignore[arg-type]
    return ModelRegistry({"tiny": spec, "toy": toy}, default="tiny")


@pytest.fixture(scope="session")
def image_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed in range(4):
        path = folder / f"image{seed}.png"
        make_image(seed).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["RedisServer"]:
    """One real redis-server for the session, on a free port with a private data folder."""
    from tests.servers import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: "RedisServer") -> str:
    """The session's Redis, emptied for this test."""
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url
