"""Fetching an image a job names by URL (`VSTEER_ALLOW_REMOTE_IMAGES`), behind the webhooks' SSRF guard.

The host is resolved and every address checked (no private, loopback or link-local address unless
`VSTEER_WEBHOOK_ALLOW_PRIVATE`, as for webhooks), then the request goes to the checked address, so DNS
cannot change between the check and the connection. Redirects are not followed, and the body is cut
off past `max_bytes`. Failures are `JobInputError`s naming the field: the job fails with the reason.
"""

from urllib.parse import urlsplit

import httpx

from webhooks.ssrf_guard import UnsafeURL, pinned_url, resolve_target
from workers.errors import JobInputError

MAX_REMOTE_IMAGE_BYTES = 50 * 1024 * 1024
REMOTE_IMAGE_TIMEOUT_S = 20.0


class RemoteImages:
    """`fetch(url, field)` → the image's bytes; one per worker, its settings read once."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        max_bytes: int = MAX_REMOTE_IMAGE_BYTES,
        timeout_s: float = REMOTE_IMAGE_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.transport = transport

    def fetch(self, url: str, field: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise JobInputError(field, f"only http and https image URLs are fetched, not {parts.scheme}://")
        try:
            ip = resolve_target(url, self.allow_private)[0]
        except UnsafeURL as exc:
            raise JobInputError(field, str(exc).replace("webhook ", "image ")) from None
        headers = {"host": parts.netloc.rsplit("@", 1)[-1], "user-agent": "vsteer-worker/1", "accept": "image/*"}
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            with (
                httpx.Client(timeout=self.timeout_s, follow_redirects=False, transport=self.transport) as client,
                client.stream("GET", pinned_url(url, ip), headers=headers, extensions=extensions) as response,
            ):
                if response.status_code != 200:
                    raise JobInputError(field, f"GET {parts.hostname}{parts.path} answered {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise JobInputError(field, f"the image at the URL is over {self.max_bytes} bytes")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise JobInputError(field, f"the image URL could not be fetched: {type(exc).__name__}: {exc}") from None
