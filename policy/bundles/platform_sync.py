"""A shared platform gateway's bundle sync (ADR 0012): one verified bundle per organisation.

`GET /api/v1/platform/manifest` (the platform credential) names the organisations placed
on this gateway. Each gets its own `BundleStore`, bound to that organisation's scope from
the start, in its own directory, and its own long-poll (`ServedBundleSync`) with its own
trust anchors: `GET /api/v1/bundles/{org}/jwks.json`, that organisation's keys only. So a
bundle is accepted for organisation B only when B's keys signed it and its signed
manifest names scope B — a bundle for B signed with A's key, or A's genuine bundle offered
as B's, is refused exactly as a dedicated sidecar refuses it. The manifest says what to
load, never what to trust: a forged manifest can add an organisation whose genuine bundle
then decides only that organisation's calls, or remove one (its calls are then refused).

Until the control plane answers, the organisations found on disk (last-known-good files,
verified again) keep being served: they were placed here when written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from policy.bundles.bundle_store import BundleStore, write_atomically
from policy.bundles.bundle_sync import (
    Backoff,
    BundleSync,
    CredentialRefused,
    credential_refused_message,
)

__all__ = ["PlatformSync", "ServedBundleSync"]

logger = logging.getLogger(__name__)

MANIFEST_PATH = "/api/v1/platform/manifest"
# An organisation id as the control plane writes it (also a safe directory name).
_ORGANIZATION = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ServedBundleSync(BundleSync):
    """One served organisation's long-poll: its scope is the manifest's, never discovered
    (`/gateways/self` describes a tenant's gateway, which a platform gateway is not)."""

    async def _discover(self, client: httpx.AsyncClient) -> None:
        assert self.store.scope is not None  # bound at creation
        self.gateway = {"bundle_scope": self.store.scope}


class PlatformSync:
    """Follows the manifest: a store and a sync per served organisation; `run()` until
    cancelled. `on_store(org, store)` is called before a new store loads anything (to
    subscribe its engine), `on_drop(org)` after an organisation left the manifest."""

    def __init__(
        self,
        directory: Path,
        control_plane_url: str,
        token: str,
        *,
        on_store: Callable[[str, BundleStore], None],
        on_drop: Callable[[str], None],
        on_placement: Callable[[str, str | None], None] | None = None,
        interval: float = 5.0,
        wait_seconds: int = 30,
        min_revision: int | None = None,
        not_before: int | None = None,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.directory = Path(directory)
        self.control_plane_url = control_plane_url.rstrip("/")
        self._token = token
        self._on_store = on_store
        self._on_drop = on_drop
        self._on_placement = on_placement
        # The manifest's id of each organisation's handle on this gateway (the `Gateway`
        # its deployments name), kept beside its bundle for a restart without the CP.
        self.placements: dict[str, str | None] = {}
        self.interval = interval
        self.wait_seconds = wait_seconds
        self.min_revision = min_revision
        self.not_before = not_before
        self._backoff_factory = backoff
        self.backoff = backoff()
        self.stores: dict[str, BundleStore] = {}
        self.syncs: dict[str, ServedBundleSync] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.last_error: str | None = None
        self.failures = 0
        self.gateway: str | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"PlatformSync({self.control_plane_url!r}, organizations={sorted(self.stores)})"

    @property
    def refused(self) -> int:
        return sum(sync.refused for sync in self.syncs.values())

    @property
    def last_refusal(self) -> str | None:
        refusals = [s.last_refusal for s in self.syncs.values() if s.last_refusal]
        return refusals[-1] if refusals else None

    def store(self, organization: str) -> BundleStore:
        """The store of `organization`, made (and announced) on first use."""
        store = self.stores.get(organization)
        if store is None:
            store = self.stores[organization] = BundleStore(
                self.directory / organization,
                scope=organization,
                min_revision=self.min_revision,
                not_before=self.not_before,
            )
            self._on_store(organization, store)
        return store

    def load_last_known_good(self) -> list[str]:
        """Serve the organisations whose last-known-good bundles are on disk (verified)."""
        served = []
        if self.directory.is_dir():
            for entry in sorted(self.directory.iterdir()):
                if not (entry.is_dir() and _ORGANIZATION.fullmatch(entry.name)):
                    continue
                self._placed(entry.name, _read_placement(entry / PLACEMENT_FILE))
                if self.store(entry.name).load_last_known_good() is not None:
                    served.append(entry.name)
        return served

    async def run(self) -> None:
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=self.wait_seconds + 15.0))
        try:
            while True:
                try:
                    await self.follow(await self.fetch_manifest(client), client)
                    delay = self.interval
                    self.backoff.reset()
                except (CredentialRefused, httpx.HTTPError, ValueError) as exc:
                    self.failures += 1
                    self.last_error = str(exc)[:1000]
                    logger.warning("platform manifest: %s", self.last_error)
                    delay = self.backoff.next_delay()
                await asyncio.sleep(delay)
        finally:
            await self.stop()
            await client.aclose()

    async def stop(self) -> None:
        """Cancel every organisation's sync (the stores keep what they serve)."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def fetch_manifest(self, client: httpx.AsyncClient) -> list[str]:
        """The organisation ids the control plane placed on this gateway."""
        response = await client.get(
            f"{self.control_plane_url}{MANIFEST_PATH}",
            headers={"Authorization": f"Bearer {self._token}"},
        )
        if response.status_code in (401, 403):
            raise CredentialRefused(
                credential_refused_message(response.status_code, "fetching the platform manifest")
            )
        response.raise_for_status()
        manifest = response.json()
        organizations = organizations_of(manifest)
        for entry in manifest["organizations"]:
            gateway_id = entry.get("gateway_id")
            self.placements[entry["organization"]] = (
                gateway_id if isinstance(gateway_id, str) else None
            )
        return organizations

    async def follow(self, organizations: list[str], client: httpx.AsyncClient) -> None:
        """Start a sync for each new organisation, stop and drop each one gone."""
        self.last_error = None
        for organization in organizations:
            self._placed(organization, self.placements.get(organization))
            if organization not in self._tasks:
                sync = ServedBundleSync(
                    self.store(organization),
                    self.control_plane_url,
                    self._token,
                    wait_seconds=self.wait_seconds,
                    client=client,
                    backoff=self._backoff_factory(),
                )
                self.syncs[organization] = sync
                self._tasks[organization] = asyncio.get_running_loop().create_task(sync.run())
                logger.info("serving organisation %s", organization)
        for organization in [o for o in self.stores if o not in organizations]:
            task = self._tasks.pop(organization, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.syncs.pop(organization, None)
            self.stores.pop(organization, None)
            self._on_drop(organization)
            # Not served again from disk after a restart: it is no longer placed here.
            shutil.rmtree(self.directory / organization, ignore_errors=True)
            logger.info("organisation %s is no longer placed here; not serving it", organization)

    def _placed(self, organization: str, gateway_id: str | None) -> None:
        """Tell `on_placement` the organisation's handle id, and keep it on disk."""
        if self._on_placement is None or gateway_id is None:
            return
        path = self.directory / organization / PLACEMENT_FILE
        if _read_placement(path) != gateway_id:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, json.dumps({"gateway_id": gateway_id}).encode())
            except OSError as exc:  # serving goes on; only a restart without the CP suffers
                logger.error("cannot keep the placement of %s: %s", organization, exc)
        self._on_placement(organization, gateway_id)


PLACEMENT_FILE = "placement.json"


def _read_placement(path: Path) -> str | None:
    try:
        value = json.loads(path.read_bytes()).get("gateway_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def organizations_of(manifest: Any) -> list[str]:
    """The organisation ids of a manifest; ValueError for anything else."""
    entries = manifest.get("organizations") if isinstance(manifest, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("the platform manifest has no 'organizations' list")
    organizations = []
    for entry in entries:
        organization = entry.get("organization") if isinstance(entry, Mapping) else None
        if not isinstance(organization, str) or not _ORGANIZATION.fullmatch(organization):
            raise ValueError(f"the platform manifest names {str(organization)[:64]!r}")
        organizations.append(organization)
    return organizations
