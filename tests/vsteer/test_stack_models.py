"""Which models a local stack's worker serves, and so which the API accepts; a port in use stops the start."""

import os
import socket

import pytest

from vsteer.stack import StackError, _served_models, check_port_free, default_model, start_stack
from workers.toy import TOY_FOLDER, toy_available


def test_the_worker_serves_exactly_the_named_models_the_first_the_default():
    assert _served_models("tiny", {}) == ["tiny"]
    assert _served_models("svd, svd-xt,svd", {}) == ["svd", "svd-xt"]


def test_the_stack_serves_the_trained_toy_model_unless_told_otherwise(tmp_path, monkeypatch):
    assert toy_available(), f"the toy model's weights belong in {TOY_FOLDER}"
    assert default_model({}) == "toy"
    assert default_model({"VSTEER_DEFAULT_MODEL": "svd-xt"}) == "svd-xt"
    monkeypatch.setattr("workers.toy.TOY_FOLDER", tmp_path)  # a checkout without the weights
    assert default_model({}) == "tiny"


def test_bad_model_settings_fail_early():
    with pytest.raises(StackError, match="names no model"):
        _served_models(" , ", {})
    with pytest.raises(StackError, match="JSON object"):
        _served_models("tiny", {"VSTEER_MODELS": "[1, 2]"})


def test_a_port_in_use_stops_the_start_with_a_clear_error(tmp_path):
    # Without the check the stack's API could not bind, and the other server's /healthz answers passed
    # for its own: the start "succeeded" and the API was restarted forever.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} on 127.0.0.1 is taken"):
            start_stack(port=port, state_dir=tmp_path / "state", env={"PATH": os.environ["PATH"]})
    assert not (tmp_path / "state").exists()  # nothing was started or written
    check_port_free("127.0.0.1", port)  # once it is closed, the port is free again


def test_a_checkout_without_the_toy_weights_says_how_to_make_them(tmp_path, monkeypatch):
    from workers.errors import ModelUnavailableError
    from workers.models import builtin_specs, resolve_folder

    monkeypatch.setattr("workers.toy.TOY_FOLDER", tmp_path / "toy")
    spec = builtin_specs(tmp_path / "cache")["toy"]
    assert spec.source == str(tmp_path / "toy") and (spec.width, spec.height, spec.num_frames) == (64, 64, 8)
    with pytest.raises(ModelUnavailableError, match="make toy-model"):
        resolve_folder(spec)
