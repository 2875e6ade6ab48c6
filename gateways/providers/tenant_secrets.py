"""Provider keys on a shared platform gateway (ADR 0012): each organisation's own, or none.

`TenantSecrets.for_organization(org)` is the resolver of one organisation's keys. The
registry (providers/__init__.py) asks it for the organisation of the call's verified
decision header (the sidecar took it from the caller's credential) — never for one a path,
header or body names — and keeps each provider it builds with a key under that
organisation only.

- `KAIZEN_SECRETS_BACKEND=vault`: `VaultTenantSecrets` reads
  `<mount>/<prefix>/<org id>/providers/<name>/{api_key,host}` at run time, exactly where the
  control plane's `vault` backend stores that organisation's `PUT
  /api/v1/secrets/providers/<name>`, through one Vault connection (token or AppRole) whose
  policy grants read on `<mount>/data/<prefix>/+/providers/*`. A key missing for the
  organisation fails closed naming the secret, whatever another organisation stored.
- anything else (`database`): `EnvKeysRefused`. Environment keys (`KAIZEN_SECRET_*`) on a
  shared pod would be spent by every organisation it serves, and the tenants' own keys
  stored in the control plane's database never reach a gateway; a keyed model is refused
  naming the secret and the fix.

Connector passwords are not served on a shared gateway either way (`NoSharedSecrets` in
gateways/tenancy.py).
"""

from __future__ import annotations

import re
import threading
from typing import Protocol

from gateways.errors import ProviderError
from gateways.providers.secrets import SecretResolver, VaultConnection, VaultSecretResolver
from gateways.settings import GatewaySettings

# The control plane's organisation ids (UUIDs, as the platform manifest names them): a
# name that could leave `<prefix>/<org>/` (a slash, `..`) never reaches a Vault path.
_ORGANIZATION = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class TenantSecrets(Protocol):
    def for_organization(self, organization: str) -> SecretResolver: ...


def _checked(organization: str) -> str:
    if not _ORGANIZATION.fullmatch(organization):
        raise ProviderError(f"{organization!r} is not an organisation id")
    return organization


class VaultTenantSecrets:
    """One `VaultSecretResolver` per organisation (its own cache), on one connection."""

    def __init__(
        self, connection: VaultConnection, *, prefix: str = "kaizen", ttl: float = 60.0
    ) -> None:
        self._connection = connection
        self._prefix, self._ttl = prefix, ttl
        self._resolvers: dict[str, VaultSecretResolver] = {}
        self._lock = threading.Lock()

    def for_organization(self, organization: str) -> SecretResolver:
        with self._lock:
            resolver = self._resolvers.get(organization)
            if resolver is None:
                resolver = self._resolvers[organization] = VaultSecretResolver(
                    self._connection.url,
                    _checked(organization),
                    prefix=self._prefix,
                    ttl=self._ttl,
                    connection=self._connection,
                )
            return resolver


class _Refused:
    """A shared gateway's answer for every key when it has no per-organisation store."""

    def _refuse(self, name: str) -> ProviderError:
        return ProviderError(
            f"secret {name!r}: a shared gateway does not use environment provider keys "
            "(KAIZEN_SECRET_*), every organisation on it would spend them; the operator runs "
            "it with KAIZEN_SECRETS_BACKEND=vault to use each organisation's own stored key"
        )

    def resolve(self, name: str) -> str:
        raise self._refuse(name)

    def bound_host(self, name: str) -> str | None:
        raise self._refuse(name)

    def connector_password(self, name: str) -> str:
        raise ProviderError(
            f"connector {name!r}: connector passwords are not served on the shared gateway"
        )


class EnvKeysRefused:
    def for_organization(self, organization: str) -> SecretResolver:
        _checked(organization)
        return _Refused()


def tenant_secrets_for(settings: GatewaySettings) -> TenantSecrets:
    """What a shared gateway's `KAIZEN_SECRETS_BACKEND` gives (see the module docstring).
    `KAIZEN_GATEWAY_ORGANIZATION_ID` is not read: there is no gateway-wide organisation."""
    if settings.secrets_backend != "vault":
        return EnvKeysRefused()
    if not settings.vault_addr:
        raise ProviderError("KAIZEN_SECRETS_BACKEND=vault needs VAULT_ADDR")
    connection = VaultConnection(
        settings.vault_addr,
        token=settings.vault_token.get_secret_value() if settings.vault_token else None,
        role_id=settings.vault_role_id,
        secret_id=settings.vault_secret_id.get_secret_value() if settings.vault_secret_id else None,
        approle_mount=settings.vault_approle_mount,
        mount=settings.vault_kv_mount,
        timeout=settings.vault_timeout_seconds,
    )
    return VaultTenantSecrets(
        connection, prefix=settings.vault_path_prefix, ttl=settings.vault_cache_seconds
    )
