"""The control plane's signing keys: Ed25519, published as JWKS, rotatable.

Two kinds, one table. The **platform** keys (`organization_id` NULL) sign access tokens
and approval grants and are published at `/.well-known/jwks.json`. Each **organisation**
has its own bundle-signing keys (`organization_id` set), published only at
`/api/v1/bundles/{scope}/jwks.json`, so a sidecar bound to one scope never trusts a key
that signs another organisation's bundles. An organisation gets its first key on its
first publish (existing deployments included).

One key of each kind signs at a time. Rotation retires the current key for signing but
keeps it published until every token it signed has expired. Private keys are sealed under
the master key in the database, so every replica signs with the same keys; bundle keys
are read from the database at each publish, so a rotation by another process (the CLI)
is seen at once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Organization, SigningKey
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import NotFound, Unavailable
from control_plane.services.crypto import seal, unseal
from policy.bundles.keys import endorse

ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    public_jwk: dict[str, Any]
    public_key: Ed25519PublicKey
    private_key: Ed25519PrivateKey | None
    retired_at: datetime | None
    expires_at: datetime | None


class KeyRing:
    def __init__(self, db: Database, master_key: bytes, *, max_token_ttl: int):
        self._db = db
        self._master_key = master_key
        self._max_token_ttl = timedelta(seconds=max_token_ttl)
        self._keys: dict[str, LoadedKey] = {}
        self._reload_lock = asyncio.Lock()
        self._last_reload = datetime.min.replace(tzinfo=utcnow().tzinfo)

    async def start(self) -> None:
        """Load every published key and make sure one is able to sign."""
        await self.reload()
        if self._signing_key() is None:
            await self.rotate()

    async def reload(self) -> None:
        async with self._db.session(SYSTEM) as session:
            rows = (
                await session.scalars(
                    select(SigningKey).where(SigningKey.organization_id.is_(None))
                )
            ).all()
        now = utcnow()
        self._keys = {
            row.kid: self._load(row)
            for row in rows
            if row.expires_at is None or row.expires_at > now
        }
        self._last_reload = now

    async def rotate(self) -> str:
        """Make a new platform key; the previous one verifies until its tokens expire."""
        async with self._db.session(SYSTEM) as session:
            kid = await self._rotate(session, None)
        await self.reload()
        return kid

    async def rotate_organization(self, organization_id: uuid.UUID) -> str:
        """Make a new bundle key for one organisation; its previous one stays published."""
        async with self._db.session(SYSTEM) as session:
            if await session.get(Organization, organization_id) is None:
                raise NotFound(f"no organisation {organization_id}")
            return await self._rotate(session, organization_id)

    async def rotate_every_organization(self) -> list[tuple[uuid.UUID, str]]:
        """A new bundle key for every organisation, each in its own transaction."""
        async with self._db.session(SYSTEM) as session:
            organizations = list(await session.scalars(select(Organization.id)))
        rotated = []
        for organization_id in organizations:
            async with self._db.session(SYSTEM) as session:
                rotated.append((organization_id, await self._rotate(session, organization_id)))
        return rotated

    async def _rotate(self, session: AsyncSession, organization_id: uuid.UUID | None) -> str:
        now = utcnow()
        current = list(
            await session.scalars(
                select(SigningKey)
                .where(SigningKey.retired_at.is_(None))
                .where(_owned_by(organization_id))
                .order_by(SigningKey.created_at, SigningKey.kid)
                .with_for_update()
            )
        )
        row = self._new_key(organization_id)
        if organization_id is not None:
            # The outgoing key vouches for its successor: runtimes that trust it follow.
            endorser = self._load(current[-1]) if current else None
            row.endorsement = self._endorsement(row, organization_id, endorser)
        for old in current:
            old.retired_at = now
            old.expires_at = now + self._max_token_ttl
        session.add(row)
        await session.flush()
        return row.kid

    def _endorsement(
        self, row: SigningKey, organization_id: uuid.UUID, endorser: LoadedKey | None
    ) -> str | None:
        """`row`'s key endorsed by `endorser`, else (an organisation's first key) by the
        platform key that signed the organisation's bundles before it had keys of its own."""
        if endorser is None or endorser.private_key is None:
            endorser = self._signing_key()
        if endorser is None or endorser.private_key is None:
            return None
        return endorse(
            endorser.private_key,
            endorser.kid,
            row.public_jwk,
            scope=str(organization_id),
            iat=int(utcnow().timestamp()),
        )

    def _new_key(self, organization_id: uuid.UUID | None) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = secrets.token_hex(8)
        public_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
        public_jwk.update(kid=kid, alg=ALGORITHM, use="sig")
        pkcs8 = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return SigningKey(
            kid=kid,
            organization_id=organization_id,
            algorithm=ALGORITHM,
            public_jwk=public_jwk,
            private_key_encrypted=seal(self._master_key, pkcs8, kid.encode()),
        )

    async def bundle_signer(
        self, session: AsyncSession, organization_id: uuid.UUID
    ) -> tuple[str, Ed25519PrivateKey]:
        """The organisation's current bundle key (made on its first publish), read in the
        publishing transaction so the key and the bundle it signs commit together."""
        row = await session.scalar(
            select(SigningKey)
            .where(SigningKey.organization_id == organization_id)
            .where(SigningKey.retired_at.is_(None))
            .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc())
            .limit(1)
        )
        if row is None:
            row = self._new_key(organization_id)
            row.endorsement = self._endorsement(row, organization_id, None)
            session.add(row)
            await session.flush()
        loaded = self._load(row)
        assert loaded.private_key is not None
        return loaded.kid, loaded.private_key

    async def organization_jwks(self, organization_id: uuid.UUID) -> dict[str, Any]:
        """The public keys that may sign `organization_id`'s bundles, and only those, plus
        every endorsement ever made for them (expired links included: a runtime that was
        away for several rotations walks the whole chain from the key it trusts)."""
        now = utcnow()
        async with self._db.session(SYSTEM) as session:
            rows = list(
                await session.scalars(
                    select(SigningKey)
                    .where(SigningKey.organization_id == organization_id)
                    .order_by(SigningKey.created_at, SigningKey.kid)
                )
            )
        keys = [r.public_jwk for r in rows if r.expires_at is None or r.expires_at > now]
        return {
            "keys": sorted(keys, key=lambda jwk: str(jwk["kid"])),
            "endorsements": [r.endorsement for r in rows if r.endorsement],
        }

    def _load(self, row: SigningKey) -> LoadedKey:
        private = None
        if row.retired_at is None:
            try:
                der = unseal(self._master_key, row.private_key_encrypted, row.kid.encode())
            except InvalidTag:
                raise Unavailable(
                    f"signing key {row.kid} cannot be opened with this master key; set "
                    "KAIZEN_MASTER_KEY (or $KAIZEN_HOME/master.key) to the key this database "
                    "was created with"
                ) from None
            loaded = serialization.load_der_private_key(der, password=None)
            assert isinstance(loaded, Ed25519PrivateKey)
            private = loaded
        public = jwt.algorithms.OKPAlgorithm.from_jwk(row.public_jwk)
        assert isinstance(public, Ed25519PublicKey)
        return LoadedKey(row.kid, row.public_jwk, public, private, row.retired_at, row.expires_at)

    def _signing_key(self) -> LoadedKey | None:
        signers = [k for k in self._keys.values() if k.private_key is not None]
        return max(signers, key=lambda k: k.kid) if signers else None

    def jwks(self) -> dict[str, Any]:
        """The platform keys (access tokens, grants); bundle keys are per organisation."""
        now = utcnow()
        keys = [k.public_jwk for k in self._keys.values() if not k.expires_at or k.expires_at > now]
        return {"keys": sorted(keys, key=lambda jwk: jwk["kid"])}

    def signer(self) -> tuple[str, Ed25519PrivateKey]:
        """The current platform key: its id and private half (tokens and grants)."""
        key = self._signing_key()
        if key is None or key.private_key is None:
            raise RuntimeError("no signing key loaded; KeyRing.start() was not awaited")
        return key.kid, key.private_key

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        kid, private_key = self.signer()
        return jwt.encode(
            claims, private_key, algorithm=ALGORITHM, headers={**(headers or {}), "kid": kid}
        )

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The verifying key for `kid`; reloads (at most once a second) to see other replicas'
        rotations."""
        key = self._keys.get(kid)
        if key is None and utcnow() - self._last_reload > timedelta(seconds=1):
            async with self._reload_lock:
                await self.reload()
            key = self._keys.get(kid)
        if key is None or (key.expires_at is not None and key.expires_at <= utcnow()):
            return None
        return key.public_key


def _owned_by(organization_id: uuid.UUID | None) -> Any:
    if organization_id is None:
        return SigningKey.organization_id.is_(None)
    return SigningKey.organization_id == organization_id
