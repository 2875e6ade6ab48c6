"""Master keys and envelope encryption: who wraps the data keys (a local master key or a
Vault transit key)."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

import hvac
import hvac.exceptions
from cryptography.exceptions import InvalidTag

from control_plane.errors import Unavailable
from control_plane.services.crypto import seal, unseal
from control_plane.services.secrets.vault import VaultClient
from control_plane.settings import Settings

log = logging.getLogger(__name__)

# -- master keys: who wraps the data keys ------------------------------------------------------


def master_key_id(key: bytes) -> str:
    """A public fingerprint of a master key (a truncated hash; reveals nothing usable)."""
    return "mk-" + hashlib.sha256(b"kaizen-studio master key id\0" + key).hexdigest()[:16]


class KeyWrapper(Protocol):
    @property
    def key_id(self) -> str: ...

    def owns(self, key_id: str) -> bool: ...

    async def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    async def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes: ...


class MasterKeys:
    """Local master keys: the first wraps, every one of them unwraps what it wrapped."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()):
        self._current = current
        self._keys = {master_key_id(k): k for k in (*previous, current)}

    @property
    def key_id(self) -> str:
        return master_key_id(self._current)

    @property
    def current(self) -> bytes:
        return self._current

    @property
    def all(self) -> list[bytes]:
        return list(self._keys.values())

    def owns(self, key_id: str) -> bool:
        return key_id in self._keys

    async def wrap(self, data_key: bytes, context: bytes) -> bytes:
        return seal(self._current, data_key, context)

    async def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        try:
            return unseal(self._keys[key_id], wrapped, context)
        except InvalidTag:
            raise Unavailable(f"a data key wrapped by {key_id} fails its integrity check") from None


class TransitKey:
    """Data keys wrapped by a Vault transit key (encrypt/decrypt; Vault keeps the key)."""

    def __init__(self, vault: VaultClient, mount: str, name: str):
        self._vault, self._mount, self._name = vault, mount, name

    @property
    def key_id(self) -> str:
        return f"transit:{self._mount}/{self._name}"

    def owns(self, key_id: str) -> bool:
        return key_id == self.key_id

    async def wrap(self, data_key: bytes, context: bytes) -> bytes:
        response = await self._vault.call(
            lambda c: c.secrets.transit.encrypt_data(
                name=self._name,
                plaintext=base64.b64encode(data_key).decode(),
                mount_point=self._mount,
            )
        )
        return str(response["data"]["ciphertext"]).encode()

    async def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        try:
            response = await self._vault.call(
                lambda c: c.secrets.transit.decrypt_data(
                    name=self._name, ciphertext=wrapped.decode(), mount_point=self._mount
                )
            )
        except hvac.exceptions.InvalidRequest:
            raise Unavailable(
                f"Vault transit key {self._name!r} cannot unwrap a data key"
            ) from None
        return base64.b64decode(response["data"]["plaintext"])


class Envelope:
    """The current wrapper for new data keys, plus the ones older data keys were wrapped by."""

    def __init__(self, current: KeyWrapper, others: Sequence[KeyWrapper] = ()):
        self.current = current
        self._all = (current, *others)

    @property
    def key_id(self) -> str:
        return self.current.key_id

    async def wrap(self, data_key: bytes, context: bytes) -> bytes:
        return await self.current.wrap(data_key, context)

    async def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        for wrapper in self._all:
            if wrapper.owns(key_id):
                return await wrapper.unwrap(key_id, wrapped, context)
        raise Unavailable(
            f"a secret's data key is wrapped by master key {key_id}, which is not loaded; set "
            "KAIZEN_MASTER_KEY_PREVIOUS to that key and run `kaizen-studio secrets "
            "rotate-master-key`"
        )


def _decode_key(encoded: str | bytes, origin: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise Unavailable(f"{origin} must be 32 bytes, base64-encoded")
    return key


def previous_master_keys(settings: Settings) -> list[bytes]:
    keys = []
    if settings.master_key_previous:
        keys.append(_decode_key(settings.master_key_previous, "KAIZEN_MASTER_KEY_PREVIOUS"))
    if settings.master_key_previous_file:
        content = settings.master_key_previous_file.read_bytes().strip()
        keys.append(_decode_key(content, str(settings.master_key_previous_file)))
    return keys
