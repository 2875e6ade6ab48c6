"""The master key and AES-GCM sealing of small secrets at rest (signing keys, for now)."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control_plane.errors import Unavailable
from control_plane.settings import Settings

_NONCE = 12


def load_master_key(settings: Settings) -> bytes:
    """`KAIZEN_MASTER_KEY` (base64, 32 bytes), else `$KAIZEN_HOME/master.key`, created 0600."""
    if settings.master_key:
        key = base64.b64decode(settings.master_key)
    else:
        path = settings.home / "master.key"
        if not path.exists():
            settings.home.mkdir(parents=True, exist_ok=True)
            _write_private(path, base64.b64encode(secrets.token_bytes(32)))
        key = base64.b64decode(path.read_bytes().strip())
    if len(key) != 32:
        raise Unavailable("the master key must be 32 bytes, base64-encoded")
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def seal(master_key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(master_key).encrypt(nonce, plaintext, associated)


def unseal(master_key: bytes, sealed: bytes, associated: bytes) -> bytes:
    return AESGCM(master_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], associated)
