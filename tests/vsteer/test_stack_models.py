"""Which models a local stack's worker serves, and so which the API accepts."""

import pytest

from vsteer.stack import StackError, _served_models


def test_the_worker_serves_exactly_the_named_models_the_first_the_default():
    assert _served_models("tiny", {}) == ["tiny"]
    assert _served_models("svd, svd-xt,svd", {}) == ["svd", "svd-xt"]


def test_bad_model_settings_fail_early():
    with pytest.raises(StackError, match="names no model"):
        _served_models(" , ", {})
    with pytest.raises(StackError, match="JSON object"):
        _served_models("tiny", {"VSTEER_MODELS": "[1, 2]"})
