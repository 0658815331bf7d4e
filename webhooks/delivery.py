"""One signed delivery attempt, to the address the SSRF guard checked, and the delay before the next."""

import logging
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from webhooks.signing import as_bytes, sign
from webhooks.ssrf_guard import UnsafeURL, pinned_url, resolve_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """Outcome of one attempt. `permanent` failures are not retried (the URL is refused)."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False


def deliver(
    url: str,
    body: bytes | str,
    secret: str,
    msg_id: str,
    attempt: int = 1,
    *,
    timeout_s: float = 5.0,
    allow_private: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> Delivery:
    """POST one signed message. The host is resolved and checked, then the request goes to the checked
    address (DNS cannot be swapped between check and connect); redirects are not followed."""
    try:
        ip = resolve_target(url, allow_private)[0]
    except UnsafeURL as exc:
        return Delivery(ok=False, error=str(exc), permanent=True)
    parts = urlsplit(url)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "vsteer-webhooks/1",
        "host": parts.netloc.rsplit("@", 1)[-1],
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport) as client:
            response = client.post(pinned_url(url, ip), content=as_bytes(body), headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        log.info("webhook %s attempt %d to %s failed: %s", msg_id, attempt, parts.hostname, exc)
        return Delivery(ok=False, error=f"{type(exc).__name__}: {exc}")
    ok = 200 <= response.status_code < 300
    log.info("webhook %s attempt %d to %s answered %d", msg_id, attempt, parts.hostname, response.status_code)
    return Delivery(ok=ok, status_code=response.status_code, error=None if ok else f"HTTP {response.status_code}")


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, with "equal jitter" — half
    fixed, half random — so retries from many jobs spread out but never collapse to zero."""
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter
