"""How an outgoing webhook is signed: Standard Webhooks, and our own header for one release.

Standard Webhooks (https://www.standardwebhooks.com, the `standardwebhooks` library):
`webhook-id` (the delivery id, the same on every retry), `webhook-timestamp` (Unix seconds
of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`.

The key: a secret of the standard form, `whsec_` + standard base64 of 24 to 64 bytes (every
secret generated since), is those bytes, so a receiver verifies with
`standardwebhooks.Webhook(secret)` unchanged. Any other secret (one the user chose, or
generated before: `whsec_` + URL-safe text) signs with its UTF-8 bytes as the key:
`Webhook(secret.encode())` — or rotate it to a generated one.

`X-Kaizen-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` is still sent
while KAIZEN_WEBHOOK_LEGACY_SIGNATURE is true (the default for this release).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105  (a marker, not a secret)
_KEY_BYTES = 32
_MIN_KEY, _MAX_KEY = 24, 64  # what the Standard Webhooks specification allows


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of `webhook-signature` for this secret (see the module docstring)."""
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if _MIN_KEY <= len(key) <= _MAX_KEY:
            return key
    return secret.encode()


def standard_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp`, `webhook-signature` for one attempt."""
    signed = Webhook(signing_key(secret)).sign(
        message_id, datetime.fromtimestamp(timestamp, UTC), body.decode()
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signed,
    }


def legacy_signature(secret: str, timestamp: int, body: bytes) -> str:
    """`X-Kaizen-Signature` as sent before Standard Webhooks (kept behind a setting)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
