"""The local backend's signed file URLs and on-disk layout."""

import time

import pytest

from storage.local import LocalStorage, sign_file_url, verify_file_token

SECRET = "test-file-secret"


def test_token_round_trip_and_tampering():
    expires = int(time.time()) + 60
    url = sign_file_url("jobs/acme/j1/video.mp4", expires, SECRET)
    assert url.startswith(f"/v1/files/jobs/acme/j1/video.mp4?expires={expires}&sig=")
    sig = url.rsplit("sig=", 1)[1]

    assert verify_file_token("jobs/acme/j1/video.mp4", expires, sig, SECRET)
    assert verify_file_token("jobs/acme/j1/video.mp4", str(expires), sig, SECRET)
    assert not verify_file_token("jobs/acme/j2/video.mp4", expires, sig, SECRET)
    assert not verify_file_token("jobs/acme/j1/video.mp4", expires + 1, sig, SECRET)
    assert not verify_file_token("jobs/acme/j1/video.mp4", expires, sig, "another secret")
    assert not verify_file_token("jobs/acme/j1/video.mp4", "soon", sig, SECRET)
    assert not verify_file_token("../x", expires, sig, SECRET)


def test_expired_token_is_refused():
    expires = int(time.time()) + 60
    sig = sign_file_url("jobs/acme/j1/video.mp4", expires, SECRET).rsplit("sig=", 1)[1]
    assert verify_file_token("jobs/acme/j1/video.mp4", expires, sig, SECRET, now=expires - 1)
    assert not verify_file_token("jobs/acme/j1/video.mp4", expires, sig, SECRET, now=expires + 1)


def test_presigned_url_expires_after_the_configured_time(tmp_path):
    store = LocalStorage(tmp_path, secret=SECRET)
    store.put("jobs/acme/j1/video.mp4", b"x", "video/mp4")
    url = store.presigned_url("jobs/acme/j1/video.mp4", expires_s=30)
    expires = int(url.split("expires=")[1].split("&")[0])
    sig = url.rsplit("sig=", 1)[1]

    assert verify_file_token("jobs/acme/j1/video.mp4", expires, sig, SECRET, now=time.time() + 29)
    assert not verify_file_token("jobs/acme/j1/video.mp4", expires, sig, SECRET, now=time.time() + 31)


def test_empty_secret_is_refused(tmp_path):
    with pytest.raises(ValueError, match="secret"):
        LocalStorage(tmp_path, secret="")


def test_objects_are_plain_files_under_the_key(tmp_path):
    store = LocalStorage(tmp_path, secret=SECRET)
    store.put("jobs/acme/j1/clips/0.mp4", b"clip", "video/mp4")
    assert (tmp_path / "jobs/acme/j1/clips/0.mp4").read_bytes() == b"clip"
    assert store.path_for("jobs/acme/j1/clips/0.mp4") == tmp_path.resolve() / "jobs/acme/j1/clips/0.mp4"
    assert not [p for p in (tmp_path / "jobs/acme/j1/clips").iterdir() if p.name.startswith(".tmp-")]
