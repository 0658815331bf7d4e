"""Webhooks per Standard Webhooks v1: signing, verification, the SSRF guard, one delivery attempt.

A message is POSTed as JSON with three headers:

- `webhook-id`: `msg_<job_id>_<status>` (`msg_<job_id>_progress_<stage>_<step>` for progress), the
  same on every retry and redelivery (receivers dedupe on it);
- `webhook-timestamp`: Unix seconds of this attempt;
- `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where `key` is
  the base64-decoded part of the secret after `whsec_`.

The body is `{"type": "job.succeeded" | "job.failed" | "job.canceled" | "job.progress", "timestamp":
<ISO 8601>, "data": <the job resource>}`; its URLs are presigned when the message is built and expire
like any other. A job whose `webhook.events` has `progress` gets `job.progress` when each stage starts
and at each quarter of its denoising steps (at most 9 per job; see `progress_worth_sending`); they are
separate deliveries, so a receiver may see them out of order and should read `data.progress`.

Retries live in `jobstate.webhook_tasks` (Celery task `vsteer.deliver_webhook.v1`, queue `webhooks`);
`enqueue_job_webhook` is how a worker (or the API, for a job canceled while queued) sends one.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from api_schemas import JobStatus
from jobstate.records import JobRecord, Presign, to_resource

log = logging.getLogger(__name__)

TASK_NAME = "vsteer.deliver_webhook.v1"
QUEUE = "webhooks"
DEFAULT_TOLERANCE_S = 300
# The job document's `webhook.events` names for each terminal status.
PROGRESS_EVENT = "progress"
EVENT_FOR_STATUS = {
    JobStatus.succeeded: "completed",
    JobStatus.failed: "failed",
    JobStatus.canceled: "canceled",
}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- signing --------------------------------------------------------------------------------------


def _key(secret: str) -> bytes:
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret must start with `whsec_`")
    return base64.b64decode(secret.removeprefix("whsec_"))


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""
    content = f"{msg_id}.{int(timestamp)}.".encode() + _as_bytes(body)
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    msg_id: str,
    timestamp: int | str,
    body: bytes | str,
    signature: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when one of the space-separated signatures in `signature` signs this message and the
    timestamp is within `tolerance_s` of now. Comparison is constant-time."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body).encode()
    return any(hmac.compare_digest(expected, candidate.encode()) for candidate in signature.split())


# --- SSRF guard -----------------------------------------------------------------------------------


class UnsafeURL(ValueError):
    """A webhook URL that must not be called: bad scheme, unresolvable, or a non-public address."""


def is_public_address(ip: IPAddress) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified addresses,
    including IPv4 addresses carried inside IPv6 (mapped, 6to4, Teredo)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None and not is_public_address(inner):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def resolve_target(url: str, allow_private: bool = False) -> list[IPAddress]:
    """The addresses `url` resolves to; raises `UnsafeURL` unless every one is allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"a webhook URL must be http or https, got scheme {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise UnsafeURL("a webhook URL needs a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise UnsafeURL(f"the webhook host {host!r} does not resolve: {exc}") from None
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not allow_private and not is_public_address(ip):
            raise UnsafeURL(f"the webhook host {host!r} resolves to {ip}, a non-public address")
        addresses.append(ip)
    if not addresses:
        raise UnsafeURL(f"the webhook host {host!r} does not resolve")
    return addresses


# --- delivery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """Outcome of one attempt. `permanent` failures are not retried (the URL is refused)."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False


def _pinned(url: str, ip: IPAddress) -> str:
    """`url` with its host replaced by the checked address, so a second lookup cannot change it."""
    parts = urlsplit(url)
    host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))


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
            response = client.post(_pinned(url, ip), content=_as_bytes(body), headers=headers, extensions=extensions)
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


# --- messages -------------------------------------------------------------------------------------


class TaskSender(Protocol):
    def send_task(self, name: str, args: Sequence[Any] | None = ..., kwargs: dict[str, Any] | None = ...,
                  **options: Any) -> Any: ...  # fmt: skip


@dataclass(frozen=True)
class WebhookMessage:
    url: str
    body: str
    msg_id: str
    tenant: str

    def task_kwargs(self) -> dict[str, str]:
        return {"url": self.url, "body": self.body, "msg_id": self.msg_id, "tenant": self.tenant}


def job_webhook_message(record: JobRecord, presign: Presign) -> WebhookMessage | None:
    """The message for a job that reached a terminal status, or for a running job's progress (the
    record carries it), or None when it asked for no webhook or not for this event."""
    hook = record.webhook()
    if hook is None:
        return None
    url, events = hook
    if record.status.is_terminal():
        if EVENT_FOR_STATUS[record.status] not in events:
            return None
        kind, msg_id = record.status.value, f"msg_{record.id}_{record.status.value}"
        at = record.finished_at or record.created_at
    elif record.status is JobStatus.running and record.progress is not None and PROGRESS_EVENT in events:
        progress = record.progress
        kind, msg_id = PROGRESS_EVENT, f"msg_{record.id}_progress_{progress.stage}_{progress.step}"
        at = datetime.now(UTC)
    else:
        return None
    payload = {
        "type": f"job.{kind}",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": to_resource(record, presign).model_dump(mode="json", by_alias=True),
    }
    body = json.dumps(payload, separators=(",", ":"))
    return WebhookMessage(url=url, body=body, msg_id=msg_id, tenant=record.tenant)


def progress_worth_sending(stage: str, step: int, total: int, last: tuple[str, int] | None) -> tuple[str, int] | None:
    """Whether a progress report earns a `job.progress` webhook, given the last one sent (`(stage,
    quarter)`): when a stage starts, and when the denoising steps pass a quarter of their total.
    Returns the new `(stage, quarter)` to remember, or None."""
    quarter = 4 * step // total if total > 0 else 0
    if last is None or last[0] != stage or (stage == "denoise" and quarter > last[1]):
        return stage, quarter
    return None


def enqueue_job_webhook(sender: TaskSender, record: JobRecord, presign: Presign) -> bool:
    """Send the job's webhook task (if it asked for one); True when a task was sent."""
    message = job_webhook_message(record, presign)
    if message is None:
        return False
    sender.send_task(TASK_NAME, kwargs=message.task_kwargs(), queue=QUEUE)
    return True
