"""The SSRF guard: non-public addresses are refused, and a refused URL is not retried."""

import ipaddress

import pytest

from webhooks.delivery import deliver
from webhooks.ssrf_guard import UnsafeURL, is_public_address, resolve_target

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
     "2002:7f00:1::1", "ff02::1", "::"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeURL):
        resolve_target(f"http://{host}/hook")


def test_public_addresses_and_allow_private() -> None:
    assert is_public_address(ipaddress.ip_address("93.184.216.34"))
    assert is_public_address(ipaddress.ip_address("2606:4700::1111"))
    assert resolve_target("https://93.184.216.34/x") == [ipaddress.ip_address("93.184.216.34")]
    assert resolve_target("http://127.0.0.1:9/x", allow_private=True) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(UnsafeURL):
        resolve_target("http://localhost/x")
    with pytest.raises(UnsafeURL):
        resolve_target("ftp://93.184.216.34/x")
    assert deliver("http://127.0.0.1:9/x", "{}", SECRET, "msg_1").permanent
