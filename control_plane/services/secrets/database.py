"""The database backend: envelope-encrypted rows; `rewrap_all` moves every data key to a
new master key without touching a ciphertext."""

from __future__ import annotations

import logging
import secrets as random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Secret, SigningKey, TotpCredential
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import NotFound, Unavailable
from control_plane.services.crypto import seal, unseal
from control_plane.services.secrets.envelope import Envelope, MasterKeys
from control_plane.services.secrets.store import SecretInfo, check_name, check_value, secret_context
from control_plane.services.secrets.vault import VaultClient

log = logging.getLogger(__name__)

# -- the database backend ----------------------------------------------------------------------


class DatabaseSecretStore:
    def __init__(self, db: Database, envelope: Envelope, vault: VaultClient | None = None):
        self._db = db
        self.envelope = envelope
        self._vault = vault

    @asynccontextmanager
    async def _session(
        self, organization_id: UUID, session: AsyncSession | None
    ) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
            return
        async with self._db.session(organization_id) as own:
            yield own

    @staticmethod
    async def _row(session: AsyncSession, organization_id: UUID, name: str) -> Secret | None:
        return await session.scalar(
            select(Secret).where(Secret.organization_id == organization_id, Secret.name == name)
        )

    async def put(
        self, organization_id: UUID, name: str, value: str, *, session: AsyncSession | None = None
    ) -> None:
        check_name(name)
        check_value(value)
        context = secret_context(organization_id, name)
        data_key = random.token_bytes(32)
        ciphertext = seal(data_key, value.encode(), context)
        wrapped = await self.envelope.wrap(data_key, context)
        async with self._session(organization_id, session) as s:
            row = await self._row(s, organization_id, name)
            if row is None:
                row = Secret(organization_id=organization_id, name=name)
                s.add(row)
            row.ciphertext, row.wrapped_key, row.key_id = ciphertext, wrapped, self.envelope.key_id
            row.updated_at = utcnow()
            await s.flush()

    async def get(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> str:
        async with self._session(organization_id, session) as s:
            row = await self._row(s, organization_id, name)
            if row is None:
                raise NotFound(f"no secret named {name!r}")
            ciphertext, wrapped, key_id = row.ciphertext, row.wrapped_key, row.key_id
        context = secret_context(organization_id, name)
        data_key = await self.envelope.unwrap(key_id, wrapped, context)
        try:
            return unseal(data_key, ciphertext, context).decode()
        except InvalidTag:
            raise Unavailable(f"secret {name!r} fails its integrity check") from None

    async def delete(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> None:
        async with self._session(organization_id, session) as s:
            row = await self._row(s, organization_id, name)
            if row is not None:
                await s.delete(row)
                await s.flush()

    async def list(
        self, organization_id: UUID, prefix: str = "", *, session: AsyncSession | None = None
    ) -> list[SecretInfo]:
        async with self._session(organization_id, session) as s:
            rows = await s.execute(
                select(Secret.name, Secret.created_at, Secret.updated_at)
                .where(
                    Secret.organization_id == organization_id,
                    Secret.name.startswith(prefix, autoescape=True),
                )
                .order_by(Secret.name)
            )
            return [SecretInfo(*row) for row in rows]

    async def close(self) -> None:
        if self._vault is not None:
            await self._vault.close()


@dataclass(frozen=True)
class Rotation:
    key_id: str
    secrets: int
    signing_keys: int
    totp_secrets: int


async def rewrap_all(
    db: Database, envelope: Envelope, master_keys: MasterKeys, *, batch: int = 200
) -> Rotation:
    """Rewrap every data key not wrapped by the current master key (ciphertexts untouched),
    and re-seal what is sealed under the local master key directly (signing keys, TOTP
    secrets) with the current one."""
    rewrapped, done = 0, False
    while not done:
        async with db.session(SYSTEM) as session:
            rows = (
                await session.scalars(
                    select(Secret)
                    .where(Secret.key_id != envelope.key_id)
                    .order_by(Secret.id)
                    .limit(batch)
                    .with_for_update()
                )
            ).all()
            for row in rows:
                context = secret_context(row.organization_id, row.name)
                data_key = await envelope.unwrap(row.key_id, row.wrapped_key, context)
                row.wrapped_key = await envelope.wrap(data_key, context)
                row.key_id = envelope.key_id
            rewrapped += len(rows)
            done = len(rows) < batch
    signing = totp = 0
    async with db.session(SYSTEM) as session:
        for key in (await session.scalars(select(SigningKey).with_for_update())).all():
            # A retired key signs nothing any more: its private half may stay unopened.
            sealed = _reseal(
                master_keys, key.private_key_encrypted, key.kid.encode(), key.retired_at is None
            )
            if sealed is not None:
                key.private_key_encrypted, signing = sealed, signing + 1
        for credential in (await session.scalars(select(TotpCredential).with_for_update())).all():
            # The associated data mfa.py binds each TOTP secret to its user with.
            aad = b"totp:" + credential.user_id.bytes
            sealed = _reseal(master_keys, credential.secret_sealed, aad, True)
            if sealed is not None:
                credential.secret_sealed, totp = sealed, totp + 1
    log.info(
        "master key rotation: %d data keys, %d signing keys, %d TOTP secrets",
        rewrapped,
        signing,
        totp,
    )
    return Rotation(envelope.key_id, rewrapped, signing, totp)


def _reseal(master_keys: MasterKeys, sealed: bytes, aad: bytes, required: bool) -> bytes | None:
    """`sealed` re-sealed under the current master key; None when it already is (or when an
    optional value opens with no loaded key)."""
    for candidate in master_keys.all:
        try:
            plaintext = unseal(candidate, sealed, aad)
        except InvalidTag:
            continue
        return (
            None if candidate == master_keys.current else seal(master_keys.current, plaintext, aad)
        )
    if required:
        raise Unavailable("a sealed key opens with none of the loaded master keys")
    return None
