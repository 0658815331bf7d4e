"""Images named by URL, fetched from a real HTTP server on loopback behind the SSRF guard."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.conftest import make_image
from vsteer.pictures import png_bytes
from workers.errors import JobInputError
from workers.images import ImageResolver
from workers.remote_images import RemoteImages

PICTURE = png_bytes(make_image(3))


class Pictures(BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Pictures.hosts.append(self.headers["Host"])
        if self.path == "/cat.png":
            self._answer(200, PICTURE)
        elif self.path == "/moved.png":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        else:
            self._answer(404, b"no")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Pictures)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_a_url_image_is_fetched_and_decoded(server):
    remote = RemoteImages(allow_private=True)
    resolver = ImageResolver(fetch_url=remote.fetch)
    image = resolver.open(f"{server}/cat.png", "image")
    assert image.size == make_image(3).size
    # The request went to the checked address with the URL's own host name.
    assert Pictures.hosts[-1] == server.removeprefix("http://")


def test_a_private_address_is_refused_unless_allowed(server):
    with pytest.raises(JobInputError) as refused:
        RemoteImages(allow_private=False).fetch(f"{server}/cat.png", "keyframes[1].image")
    assert refused.value.field == "keyframes[1].image"
    assert "non-public address" in refused.value.detail


@pytest.mark.parametrize(
    ("path", "max_bytes", "says"),
    [
        ("/missing.png", 10**6, "answered 404"),
        ("/moved.png", 10**6, "answered 302"),  # redirects are not followed
        ("/cat.png", 100, "over 100 bytes"),
    ],
)
def test_what_cannot_be_fetched_fails_naming_the_field(server, path, max_bytes, says):
    with pytest.raises(JobInputError) as refused:
        RemoteImages(allow_private=True, max_bytes=max_bytes).fetch(f"{server}{path}", "style.image")
    assert refused.value.field == "style.image" and says in refused.value.detail


def test_only_http_urls_are_fetched_and_none_without_the_setting():
    with pytest.raises(JobInputError, match="only http and https"):
        RemoteImages().fetch("s3://bucket/cat.png", "image")
    with pytest.raises(JobInputError, match="URL references are not enabled"):
        ImageResolver().read("https://example.com/cat.png", "image")
