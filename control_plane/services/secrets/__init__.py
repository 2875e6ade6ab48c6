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

from control_plane.db.session import Database
from control_plane.errors import Unavailable
from control_plane.services.crypto import load_master_key
from control_plane.services.secrets.database import DatabaseSecretStore, Rotation, rewrap_all
from control_plane.services.secrets.envelope import (
    Envelope,
    KeyWrapper,
    MasterKeys,
    TransitKey,
    master_key_id,
    previous_master_keys,
)
from control_plane.services.secrets.providers import (
    PROVIDER_HOST,
    PROVIDER_KEY,
    delete_provider_key,
    provider_secret_name,
    put_provider_key,
)
from control_plane.services.secrets.store import (
    MAX_NAME,
    MAX_VALUE,
    SecretInfo,
    SecretStore,
    check_name,
)
from control_plane.services.secrets.vault import VaultClient, VaultSecretStore
from control_plane.settings import Settings

__all__ = [
    "MAX_NAME",
    "MAX_VALUE",
    "PROVIDER_HOST",
    "PROVIDER_KEY",
    "DatabaseSecretStore",
    "Envelope",
    "KeyWrapper",
    "MasterKeys",
    "Rotation",
    "SecretInfo",
    "SecretStore",
    "TransitKey",
    "VaultClient",
    "VaultSecretStore",
    "check_name",
    "delete_provider_key",
    "envelope_for",
    "master_key_id",
    "master_keys",
    "open_secret_store",
    "previous_master_keys",
    "provider_secret_name",
    "put_provider_key",
    "rewrap_all",
]

# -- wiring: the store the settings ask for ----------------------------------------------------


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
