"""Credentials for providers: `resolve(name)` answers the API key a model config names as
`api_key_secret: <name>`.

- `KAIZEN_SECRETS_BACKEND=vault`: `VaultSecretResolver` reads the key the control plane
  stored through `PUT /api/v1/secrets/providers/<name>` straight from Vault / OpenBao (KV v2,
  `<mount>/<prefix>/<organization id>/providers/<name>/api_key`), token or AppRole auth.
  The gateway never asks the control plane's API for a key.
- `database` (the embedded default): a gateway has no database access, so it keeps reading
  `KAIZEN_SECRET_<NAME>` from its environment (`EnvSecretResolver`). Deployments that want
  provider keys managed centrally use `vault`.
- A shared platform gateway reads each organisation's keys instead (tenant_secrets.py).

Values are never logged; errors name the secret, never its value.

`connector_password(name)` is a data connector's password, stored by the control plane as
`connectors/<name>/password` (Vault: `<mount>/<prefix>/<org id>/connectors/<name>/password`;
environment: `KAIZEN_SECRET_CONNECTOR_<NAME>_PASSWORD`), read at the time of each call.

`bound_host(name)` is the provider host the key may be sent to (see providers/__init__.py):
Vault's `providers/<name>/host` (written by the control plane with the key), or
`KAIZEN_SECRET_<NAME>_HOST`; None means "the provider's own host".
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import hvac
import hvac.exceptions
import requests

from gateways.errors import ProviderError
from gateways.settings import GatewaySettings


class SecretResolver(Protocol):
    def resolve(self, name: str) -> str: ...

    def bound_host(self, name: str) -> str | None: ...

    def connector_password(self, name: str) -> str: ...


class EnvSecretResolver:
    """`resolve("openai-key")` reads `KAIZEN_SECRET_OPENAI_KEY` (prefix configurable)."""

    def __init__(self, prefix: str = "KAIZEN_SECRET_", environ: Mapping[str, str] | None = None):
        self._prefix = prefix
        self._environ = os.environ if environ is None else environ

    def variable(self, name: str) -> str:
        return self._prefix + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    def resolve(self, name: str) -> str:
        value = self._environ.get(self.variable(name))
        if not value:
            raise ProviderError(f"secret {name!r} is not configured (set {self.variable(name)})")
        return value

    def bound_host(self, name: str) -> str | None:
        return self._environ.get(self.variable(name) + "_HOST") or None

    def connector_password(self, name: str) -> str:
        variable = self.variable(f"connector_{name}_password")
        value = self._environ.get(variable)
        if not value:
            raise ProviderError(f"connector {name!r} has no password here (set {variable})")
        return value


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CONNECTOR = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class VaultConnection:
    """One authenticated Vault / OpenBao client (token or AppRole, logging in again when an
    AppRole token expired). Shared by the resolvers of every organisation a shared gateway
    serves (gateways/providers/tenant_secrets.py); `lock` serialises its use."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        approle_mount: str = "approle",
        mount: str = "secret",
        timeout: float = 5.0,
    ) -> None:
        if not token and not (role_id and secret_id):
            raise ProviderError("Vault needs VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID")
        self.url = url
        self.mount = mount
        self.lock = threading.Lock()
        self._client = hvac.Client(url=url, token=token, timeout=timeout)
        self._approle = (role_id, secret_id, approle_mount) if role_id and secret_id else None
        self._logged_in = self._approle is None

    def _login(self) -> None:
        assert self._approle is not None
        role_id, secret_id, mount = self._approle
        self._client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=mount)
        self._logged_in = True

    def read(self, path: str) -> dict[str, Any]:
        """KV v2 `path` under the mount; the caller holds `lock`."""

        def read() -> dict[str, Any]:
            response: dict[str, Any] = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self.mount, raise_on_deleted_version=True
            )
            return response

        if not self._logged_in:
            self._login()
        try:
            return read()
        except hvac.exceptions.Forbidden:
            if self._approle is None:
                raise
            self._login()
            return read()


class VaultSecretResolver:
    """Provider keys of one organisation from Vault / OpenBao KV v2, as the control plane's
    `vault` backend stores them. Keys are cached for `ttl` seconds."""

    def __init__(
        self,
        url: str,
        organization_id: str,
        *,
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        approle_mount: str = "approle",
        mount: str = "secret",
        prefix: str = "kaizen",
        timeout: float = 5.0,
        ttl: float = 60.0,
        connection: VaultConnection | None = None,
    ) -> None:
        self._connection = connection or VaultConnection(
            url,
            token=token,
            role_id=role_id,
            secret_id=secret_id,
            approle_mount=approle_mount,
            mount=mount,
            timeout=timeout,
        )
        self.url = self._connection.url
        self.organization_id = organization_id
        self._organization_root = f"{prefix.strip('/')}/{organization_id}"
        self._root = f"{self._organization_root}/providers"
        self._ttl = ttl
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = self._connection.lock

    def path(self, name: str, field: str = "api_key") -> str:
        return f"{self._root}/{name}/{field}"

    def _read(self, name: str, field: str, path: str | None = None) -> dict[str, Any]:
        return self._connection.read(path or self.path(name, field))

    def resolve(self, name: str) -> str:
        value = self._value(name, "api_key")
        if value is None:
            raise ProviderError(
                f"secret {name!r} is not stored in Vault (PUT /api/v1/secrets/providers/{name})"
            )
        return value

    def bound_host(self, name: str) -> str | None:
        return self._value(name, "host")

    def connector_password(self, name: str) -> str:
        """Read on every call (no cache): a password replaced in the control plane is used
        from the next call on."""
        if not _CONNECTOR.fullmatch(name):
            raise ProviderError(f"{name!r} is not a connector name")
        try:
            with self._lock:
                response = self._read(
                    name, "password", f"{self._organization_root}/connectors/{name}/password"
                )
        except hvac.exceptions.InvalidPath:
            raise ProviderError(f"connector {name!r} has no password stored") from None
        except requests.exceptions.RequestException as error:
            raise ProviderError(
                f"Vault at {self.url} is unreachable ({type(error).__name__})"
            ) from None
        except hvac.exceptions.VaultError as error:
            raise ProviderError(
                f"Vault refused to read the password of connector {name!r} ({type(error).__name__})"
            ) from None
        value = ((response.get("data") or {}).get("data") or {}).get("value")
        if not isinstance(value, str) or not value:
            raise ProviderError(f"connector {name!r} has an empty password in Vault")
        return value

    def _value(self, name: str, field: str) -> str | None:
        if not _NAME.match(name):
            raise ProviderError(f"secret name {name!r} is not a provider key name")
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(f"{name}/{field}")
            if cached and now - cached[0] < self._ttl:
                return cached[1]
            try:
                response = self._read(name, field)
            except hvac.exceptions.InvalidPath:
                if field != "api_key":
                    self._cache[f"{name}/{field}"] = (now, None)
                return None
            except requests.exceptions.RequestException as error:
                raise ProviderError(
                    f"Vault at {self.url} is unreachable ({type(error).__name__})"
                ) from None
            except hvac.exceptions.VaultError as error:
                raise ProviderError(
                    f"Vault refused to read secret {name!r} ({type(error).__name__})"
                ) from None
            value = ((response.get("data") or {}).get("data") or {}).get("value")
            if not isinstance(value, str) or not value:
                raise ProviderError(f"secret {name!r} in Vault has no {field} value")
            self._cache[f"{name}/{field}"] = (now, value)
            return value


def resolver_for(settings: GatewaySettings) -> SecretResolver:
    """The resolver `KAIZEN_SECRETS_BACKEND` asks for (see the module docstring)."""
    if settings.secrets_backend != "vault":
        return EnvSecretResolver()
    organization_id = settings.gateway_organization_id or settings.gateway_bundle_scope
    if not settings.vault_addr or not organization_id:
        raise ProviderError(
            "KAIZEN_SECRETS_BACKEND=vault needs VAULT_ADDR and KAIZEN_GATEWAY_ORGANIZATION_ID"
        )
    return VaultSecretResolver(
        settings.vault_addr,
        organization_id,
        token=settings.vault_token.get_secret_value() if settings.vault_token else None,
        role_id=settings.vault_role_id,
        secret_id=settings.vault_secret_id.get_secret_value() if settings.vault_secret_id else None,
        approle_mount=settings.vault_approle_mount,
        mount=settings.vault_kv_mount,
        prefix=settings.vault_path_prefix,
        timeout=settings.vault_timeout_seconds,
        ttl=settings.vault_cache_seconds,
    )
