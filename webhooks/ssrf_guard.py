"""The SSRF guard: a webhook URL is called only when every address its host resolves to is public."""

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def pinned_url(url: str, ip: IPAddress) -> str:
    """`url` with its host replaced by the checked address, so a second lookup cannot change it (send
    the original host in the `Host` header, and as the TLS server name for https)."""
    parts = urlsplit(url)
    host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))


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
