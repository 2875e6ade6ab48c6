"""The Vault backend (hvac; OpenBao speaks the same API): KV v2 with token or AppRole auth."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import hvac
import hvac.exceptions
import requests
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import NotFound, Unavailable
from control_plane.services.secrets.store import SecretInfo, check_name, check_value
from control_plane.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

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
        check_value(value)
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
