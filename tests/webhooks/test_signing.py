"""Standard Webhooks signing and verification."""

import time

from webhooks.settings import DEV_WEBHOOK_SECRET
from webhooks.signing import sign, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_the_standard_webhooks_example() -> None:
    body = '{"test": 2432232314}'
    signature = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, signature, now=1614265330)


def test_verify_rejects_tampering_other_secret_and_stale_timestamps() -> None:
    now = int(time.time())
    sig = sign(SECRET, "msg_1", now, b"{}")
    assert verify(SECRET, "msg_1", now, b"{}", f"v1,bogus {sig}")
    assert not verify(SECRET, "msg_1", now, b'{"x":1}', sig)
    assert not verify(SECRET, "msg_2", now, b"{}", sig)
    assert not verify(DEV_WEBHOOK_SECRET, "msg_1", now, b"{}", sig)
    assert not verify(SECRET, "msg_1", now - 600, b"{}", sign(SECRET, "msg_1", now - 600, b"{}"))
    assert not verify(SECRET, "msg_1", "not-a-number", b"{}", sig)
