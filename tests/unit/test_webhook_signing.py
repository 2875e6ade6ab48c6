"""Standard Webhooks signing (control_plane/services/webhook_signing.py), checked against
the `standardwebhooks` library a receiver uses, and the legacy header it replaces."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from control_plane.services.webhook_signing import (
    legacy_signature,
    new_secret,
    signing_key,
    standard_headers,
)

BODY = json.dumps({"id": "d-1", "event": "approval.requested"}).encode()


def test_generated_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(key) == 32
    assert signing_key(secret) == key
    assert new_secret() != secret


def test_the_library_verifies_what_we_sign_and_refuses_changes() -> None:
    secret = new_secret()
    headers = standard_headers(secret, "d-1", int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"d-1", b"d-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "d-2"})


@pytest.mark.parametrize(
    "secret",
    [
        "my-own-signing-secret-123",  # chosen by the user
        "whsec_" + secrets.token_urlsafe(32),  # generated before Standard Webhooks
        "whsec_" + base64.b64encode(b"too short").decode(),  # decodes, but under 24 bytes
        "whsec_" + base64.b64encode(bytes(65)).decode(),  # over 64 bytes
    ],
)
def test_other_secrets_sign_with_their_utf8_bytes(secret: str) -> None:
    assert signing_key(secret) == secret.encode()
    headers = standard_headers(secret, "d-1", int(time.time()), BODY)
    assert Webhook(secret.encode()).verify(BODY, headers) == json.loads(BODY)


def test_the_legacy_header_is_unchanged() -> None:
    secret, timestamp = "whsec_legacy-secret-value", 1_764_000_000
    expected = hmac.new(secret.encode(), b"1764000000." + BODY, hashlib.sha256).hexdigest()
    assert legacy_signature(secret, timestamp, BODY) == f"t={timestamp},v1={expected}"
