"""The secrets interface: everything the platform must read back later goes through it.

`request.app.state.secrets` is a `SecretStore` (set up in the app's lifespan):

    await store.put(organization_id, "webhooks/<id>/secret", value)   # create or replace
    await store.get(organization_id, "webhooks/<id>/secret")          # NotFound if absent
    await store.delete(organization_id, "webhooks/<id>/secret")       # idempotent

Backends (`KAIZEN_SECRETS_BACKEND`):

- `database` (default): envelope encryption. Each secret is sealed (AES-GCM) under its own
  random data key; the data key is wrapped by the master key (or by a Vault transit key when
  `KAIZEN_VAULT_TRANSIT_KEY` is set) whose id is stored beside it, so `rewrap_all` (CLI:
  `kaizen-studio secrets rotate-master-key`) moves every data key to a new master key without
  touching a ciphertext. Both layers bind `<organization id>/<name>` as associated data, so
  a row copied to another name or tenant does not open.
- `vault`: HashiCorp Vault / OpenBao KV v2 at `<mount>/<prefix>/<organization id>/<name>`,
  token or AppRole auth. An unreachable Vault is `Unavailable` (503), never a 500.

The database backend opens its own transaction unless given `session=`: pass the caller's
session when it already holds one (SQLite allows one writer at a time). Values are never
logged; errors name the secret, never its value.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets as random
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

import hvac
import hvac.exceptions
import requests
from cryptography.exceptions import InvalidTag
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Secret, SigningKey, TotpCredential
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Invalid, NotFound, Unavailable
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.crypto import load_master_key, seal, unseal
from control_plane.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_NAME = 300
MAX_VALUE = 64 * 1024
_SEGMENT = re.compile(r"[A-Za-z0-9_.@-]+")


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    created_at: datetime | None
    updated_at: datetime | None


class SecretStore(Protocol):
    async def put(
        self, organization_id: UUID, name: str, value: str, *, session: AsyncSession | None = None
    ) -> None: ...

    async def get(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> str: ...

    async def delete(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> None: ...

    async def list(
        self, organization_id: UUID, prefix: str = "", *, session: AsyncSession | None = None
    ) -> list[SecretInfo]: ...

    async def close(self) -> None: ...


def check_name(name: str, field: str = "name") -> str:
    """A path of `/`-separated segments of letters, digits and `_.@-` (safe as a Vault path)."""
    segments = name.split("/")
    if (
        not name
        or len(name) > MAX_NAME
        or any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments)
    ):
        raise Invalid(
            f"{field}: a secret name is 1-{MAX_NAME} characters of path segments "
            "(letters, digits, '_', '.', '@', '-') separated by '/'",
            details=[{"field": field, "message": "invalid secret name"}],
        )
    return name


def _check_value(value: str) -> None:
    if not value or len(value.encode()) > MAX_VALUE:
        raise Invalid(
            f"value: a secret is 1 to {MAX_VALUE} bytes",
            details=[{"field": "value", "message": "empty or too long"}],
        )


def _context(organization_id: UUID, name: str) -> bytes:
    return f"{organization_id}/{name}".encode()


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
        _check_value(value)
        context = _context(organization_id, name)
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
        context = _context(organization_id, name)
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
                context = _context(row.organization_id, row.name)
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


# -- Vault (hvac; OpenBao speaks the same API) -------------------------------------------------


class VaultClient:
    """A thread-safe hvac client: calls run in a worker thread; AppRole logs in again when
    its token expires; network and server failures become `Unavailable`."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        approle_mount: str = "approle",
        timeout: float = 5.0,
    ):
        if not token and not (role_id and secret_id):
            raise Unavailable("Vault needs VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID")
        self.url = url
        self._client = hvac.Client(url=url, token=token, timeout=timeout)
        self._approle = (role_id, secret_id, approle_mount) if role_id and secret_id else None
        self._logged_in = not self._approle
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultClient:
        if not settings.vault_addr:
            raise Unavailable("the vault secrets backend needs VAULT_ADDR")
        return cls(
            settings.vault_addr,
            token=settings.vault_token.get_secret_value() if settings.vault_token else None,
            role_id=settings.vault_role_id,
            secret_id=(
                settings.vault_secret_id.get_secret_value() if settings.vault_secret_id else None
            ),
            approle_mount=settings.vault_approle_mount,
            timeout=settings.vault_timeout_seconds,
        )

    def _login(self) -> None:
        assert self._approle is not None
        role_id, secret_id, mount = self._approle
        with self._lock:
            try:
                self._client.auth.approle.login(
                    role_id=role_id, secret_id=secret_id, mount_point=mount, use_token=True
                )
            except hvac.exceptions.InvalidRequest:
                raise Unavailable(
                    f"Vault at {self.url} refused the control plane's AppRole login"
                ) from None
            self._logged_in = True

    def _call(self, operation: Callable[[hvac.Client], T]) -> T:
        try:
            if not self._logged_in:
                self._login()
            try:
                return operation(self._client)
            except hvac.exceptions.Forbidden:
                if self._approle is None:
                    raise
                self._login()  # the AppRole token may have expired: once more, fresh
                return operation(self._client)
        except requests.exceptions.RequestException as error:
            raise Unavailable(
                f"Vault at {self.url} is unreachable ({type(error).__name__})"
            ) from None
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            raise Unavailable(
                f"Vault at {self.url} refused the control plane's credential"
            ) from None
        except (
            hvac.exceptions.InternalServerError,
            hvac.exceptions.VaultDown,
            hvac.exceptions.VaultNotInitialized,
            hvac.exceptions.BadGateway,
            hvac.exceptions.UnexpectedError,
        ) as error:
            raise Unavailable(f"Vault at {self.url} failed ({type(error).__name__})") from None

    async def call(self, operation: Callable[[hvac.Client], T]) -> T:
        return await asyncio.to_thread(self._call, operation)

    async def close(self) -> None:
        adapter = self._client.adapter
        await asyncio.to_thread(adapter.close)


def _vault_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # Vault writes nanoseconds; Python parses at most microseconds.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(trimmed)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class VaultSecretStore:
    """KV v2: `<mount>/<prefix>/<organization id>/<name>` holds `{"value": …}`."""

    def __init__(self, vault: VaultClient, *, mount: str = "secret", prefix: str = "kaizen"):
        self._vault, self._mount, self._prefix = vault, mount, prefix.strip("/")

    def path(self, organization_id: UUID, name: str) -> str:
        return f"{self._prefix}/{organization_id}/{name}"

    async def put(
        self, organization_id: UUID, name: str, value: str, *, session: AsyncSession | None = None
    ) -> None:
        check_name(name)
        _check_value(value)
        path = self.path(organization_id, name)
        await self._vault.call(
            lambda c: c.secrets.kv.v2.create_or_update_secret(
                path=path, secret={"value": value}, mount_point=self._mount
            )
        )

    async def get(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> str:
        check_name(name)
        path = self.path(organization_id, name)
        try:
            response = await self._vault.call(
                lambda c: c.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self._mount, raise_on_deleted_version=True
                )
            )
        except hvac.exceptions.InvalidPath:
            raise NotFound(f"no secret named {name!r}") from None
        value = (response.get("data") or {}).get("data", {}).get("value")
        if not isinstance(value, str):
            raise NotFound(f"no secret named {name!r}")
        return value

    async def delete(
        self, organization_id: UUID, name: str, *, session: AsyncSession | None = None
    ) -> None:
        check_name(name)
        path = self.path(organization_id, name)
        try:
            await self._vault.call(
                lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(
                    path=path, mount_point=self._mount
                )
            )
        except hvac.exceptions.InvalidPath:
            return

    async def _keys(self, folder: str) -> list[str]:
        try:
            response = await self._vault.call(
                lambda c: c.secrets.kv.v2.list_secrets(path=folder, mount_point=self._mount)
            )
        except hvac.exceptions.InvalidPath:
            return []
        return list(response["data"]["keys"])

    async def list(
        self, organization_id: UUID, prefix: str = "", *, session: AsyncSession | None = None
    ) -> list[SecretInfo]:
        root = f"{self._prefix}/{organization_id}/"
        names: list[str] = []
        # Start at the deepest folder the prefix names: `providers/x/api_key` lists one folder.
        folders = [prefix.rpartition("/")[0] + "/" if "/" in prefix else ""]
        while folders:
            folder = folders.pop()
            for key in await self._keys(root + folder):
                path = folder + key
                if path.startswith(prefix):
                    (folders if key.endswith("/") else names).append(path)
                elif key.endswith("/") and prefix.startswith(path):
                    folders.append(path)  # the prefix goes on inside this folder
        found = []
        for name in sorted(names):
            metadata = await self._metadata(root + name)
            if metadata is not None:  # else deleted between the listing and now
                created, updated = metadata.get("created_time"), metadata.get("updated_time")
                found.append(SecretInfo(name, _vault_time(created), _vault_time(updated)))
        return found

    async def _metadata(self, path: str) -> dict[str, Any] | None:
        try:
            response = await self._vault.call(
                lambda c: c.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self._mount)
            )
        except hvac.exceptions.InvalidPath:
            return None
        return dict(response.get("data") or {})

    async def close(self) -> None:
        await self._vault.close()


# -- wiring --------------------------------------------------------------------------------------


def master_keys(settings: Settings) -> MasterKeys:
    return MasterKeys(load_master_key(settings), previous_master_keys(settings))


def envelope_for(settings: Settings, vault: VaultClient | None = None) -> Envelope:
    """Local master keys, with Vault transit in front of them when a transit key is set."""
    local = master_keys(settings)
    if settings.vault_transit_key:
        if vault is None:
            raise Unavailable("KAIZEN_VAULT_TRANSIT_KEY needs a Vault client")
        transit = TransitKey(vault, settings.vault_transit_mount, settings.vault_transit_key)
        return Envelope(transit, [local])
    return Envelope(local)


def open_secret_store(settings: Settings, db: Database) -> SecretStore:
    backend = settings.secrets_backend
    if backend == "vault":
        return VaultSecretStore(
            VaultClient.from_settings(settings),
            mount=settings.vault_kv_mount,
            prefix=settings.vault_path_prefix,
        )
    if backend == "database":
        vault = VaultClient.from_settings(settings) if settings.vault_transit_key else None
        return DatabaseSecretStore(db, envelope_for(settings, vault), vault)
    raise Unavailable(f"KAIZEN_SECRETS_BACKEND must be 'database' or 'vault', not {backend!r}")


# -- provider credentials (the API's write-only face) ------------------------------------------

PROVIDER_KEY = "providers/{provider}/api_key"
PROVIDER_HOST = "providers/{provider}/host"  # the host the key is bound to (not secret)


def provider_secret_name(provider: str) -> str:
    return PROVIDER_KEY.format(provider=check_name(provider, "provider"))


async def put_provider_key(
    store: SecretStore,
    session: AsyncSession,
    organization_id: UUID,
    actor: Actor,
    provider: str,
    api_key: str,
    host: str,
) -> tuple[SecretInfo, bool]:
    """Create or replace the provider's API key, bound to `host` (the only host gateways
    send it to, services/provider_hosts.py); answers what may be shown and whether it is
    new. The audit event names the provider and the host, never the key."""
    name = provider_secret_name(provider)
    existed = any(i.name == name for i in await store.list(organization_id, name, session=session))
    # Audit first: should the store refuse (Vault down), the event rolls back with it.
    await audit.record(
        session,
        organization_id,
        actor,
        "secret.replace" if existed else "secret.create",
        "secret",
        name,
        provider=provider,
        host=host,
    )
    await store.put(organization_id, name, api_key, session=session)
    await store.put(organization_id, PROVIDER_HOST.format(provider=provider), host, session=session)
    (info,) = [
        i for i in await store.list(organization_id, name, session=session) if i.name == name
    ]
    return info, not existed


async def delete_provider_key(
    store: SecretStore, session: AsyncSession, organization_id: UUID, actor: Actor, provider: str
) -> None:
    name = provider_secret_name(provider)
    if not any(i.name == name for i in await store.list(organization_id, name, session=session)):
        raise NotFound(f"no API key stored for provider {provider!r}")
    await audit.record(
        session, organization_id, actor, "secret.delete", "secret", name, provider=provider
    )
    await store.delete(organization_id, name, session=session)
    await store.delete(organization_id, PROVIDER_HOST.format(provider=provider), session=session)
