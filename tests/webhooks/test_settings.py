"""Webhook settings: secrets in the Standard Webhooks form, no development secret in production."""

import pytest

from webhooks.settings import WebhookSettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_settings_refuse_dev_secret_in_production() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        WebhookSettings(environment="production")
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSettings(webhook_secret="plain")
    assert WebhookSettings(environment="production", webhook_secret=SECRET).webhook_secret_for("t") == SECRET
