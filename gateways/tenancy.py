"""A shared platform gateway (ADR 0012): each organisation's agents from its own bundle.

With the operator's platform credential (`kgp_…`) as `KAIZEN_GATEWAY_TOKEN`, the gateway
follows the platform manifest exactly as the sidecar beside it does
(`policy/bundles/platform_sync.py`: one store per organisation, each bundle verified with
its own organisation's keys) and serves what each placed organisation deployed to its
handle on this gateway (the `Gateway` of mode `platform` the manifest names).

Which organisation a request runs for is the sidecar's signed decision header (`org`,
HMAC-keyed by the credential), never the request: an `/o/{org}/…` path must name the same
organisation, and the agent is looked up in that organisation's deployments only. Each
organisation's executions go to its own ingest
(`/api/v1/platform/organizations/{org}/executions/ingest`), which refuses an organisation
not placed here. Provider keys are the decision's organisation's own, read from Vault at
run time (gateways/providers/tenant_secrets.py); environment keys are refused, and
connector passwords are not served (`NoSharedSecrets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from policy.bundles.bundle import VerifiedBundle
from policy.bundles.bundle_store import BundleStore
from policy.bundles.bundle_sync import InsecureControlPlane, check_control_plane_url
from policy.bundles.platform_sync import PlatformSync

from gateways.deployments import (
    BundleFloor,
    DeploymentError,
    Deployments,
    deployments_from_bundle,
)
from gateways.errors import Forbidden, NotFound, ProviderError
from gateways.executions import Execution, ExecutionRecorder, OperatorSession
from gateways.settings import GatewaySettings

logger = logging.getLogger(__name__)

PLATFORM_CREDENTIAL_PREFIX = "kgp_"


def is_platform_credential(token: str) -> bool:
    return token.startswith(PLATFORM_CREDENTIAL_PREFIX)


class SharedDeploymentSource:
    """Deployments by organisation, from the manifest's organisations' verified bundles."""

    gateway_id: str | None = None  # one per organisation: its handle (the manifest's)

    def __init__(
        self, directory: Path, control_plane_url: str, token: str, *, floor: BundleFloor
    ) -> None:
        self.platform = PlatformSync(
            directory,
            control_plane_url,
            token,
            on_store=self._on_store,
            on_drop=self._on_drop,
            on_placement=self._on_placement,
            min_revision=floor.min_revision,
            not_before=floor.not_before,
        )
        self.by_organization: dict[str, Deployments] = {}
        self.errors: dict[str, str] = {}
        self._bundles: dict[str, VerifiedBundle] = {}
        self._handles: dict[str, str] = {}  # organisation -> the gateway id it deploys to
        self._task: asyncio.Task[None] | None = None

    def _on_store(self, organization: str, store: BundleStore) -> None:
        store.subscribe(lambda verified: self._on_bundle(organization, verified))

    def _on_bundle(self, organization: str, verified: VerifiedBundle) -> None:
        if verified.scope != organization:  # the store is bound to it; never mix
            raise ValueError(f"bundle of scope {verified.scope!r} for {organization!r}: refused")
        self._bundles[organization] = verified
        self._deploy(organization)

    def _on_placement(self, organization: str, gateway_id: str | None) -> None:
        if gateway_id is not None and self._handles.get(organization) != gateway_id:
            self._handles[organization] = gateway_id
            self._deploy(organization)

    def _deploy(self, organization: str) -> None:
        """What the organisation deployed to its handle on this gateway, once both its
        bundle and its handle's id are known."""
        verified, handle = self._bundles.get(organization), self._handles.get(organization)
        if verified is None or handle is None:
            return
        try:
            self.by_organization[organization] = deployments_from_bundle(verified, handle)
        except DeploymentError as exc:
            self.errors[organization] = str(exc)
            logger.error("organisation %s: %s; keeping what it had", organization, exc)
            return
        self.errors.pop(organization, None)

    def _on_drop(self, organization: str) -> None:
        self.by_organization.pop(organization, None)
        self._bundles.pop(organization, None)
        self._handles.pop(organization, None)
        self.errors.pop(organization, None)

    async def start(self) -> None:
        self.platform.load_last_known_good()
        self._task = asyncio.create_task(self.platform.run(), name="platform-bundle-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def current(self) -> Deployments:
        raise DeploymentError(
            "a shared gateway serves each organisation from its own bundle "
            "(the decision header names which)"
        )

    def for_organization(self, organization: str | None) -> Deployments:
        deployments = self.by_organization.get(organization) if organization else None
        if deployments is None:
            raise NotFound("this shared gateway serves no agents of the caller's organisation")
        return deployments

    def summary(self) -> dict[str, Any] | None:
        """What `/healthz` says: None before any organisation is served."""
        if not self.by_organization:
            return None
        served = self.by_organization.values()
        return {
            "status": "ok",
            "bundle_revision": ",".join(
                sorted(f"{d.organization_id}:{d.bundle_revision}" for d in served)
            ),
            "organizations": len(self.by_organization),
            "agents": sum(len(d.agents) for d in served),
            "pipelines": sum(len(d.pipelines) for d in served),
        }


def shared_or_dedicated(settings: GatewaySettings) -> SharedDeploymentSource | None:
    """The shared source when the credential is a platform gateway's, else None."""
    token = settings.gateway_token.get_secret_value()
    if not is_platform_credential(token):
        return None
    if settings.gateway_bundle is not None:
        raise DeploymentError("a shared platform gateway follows the control plane only")
    try:
        check_control_plane_url(
            settings.control_plane_url, allow_insecure=settings.allow_insecure_control_plane
        )
    except InsecureControlPlane as exc:
        raise DeploymentError(str(exc)) from None
    return SharedDeploymentSource(
        settings.state_dir / "platform-bundles",
        settings.control_plane_url,
        token,
        floor=BundleFloor(settings.bundle_min_revision, settings.not_before_seconds),
    )


def check_namespace(path: str, organization: str | None) -> None:
    """An `/o/{org}/…` path must name the decision's organisation (the sidecar checked it
    against the caller's credential; checked again here, where the agent is looked up)."""
    if not path.startswith("/o/"):
        return
    named = path[3:].split("/", 1)[0]
    if named != organization:
        raise Forbidden("the path names another organisation than the decision")


class TenantRecorders:
    """One `ExecutionRecorder` per organisation, each shipping to its own ingest."""

    def __init__(self, control_plane_url: str, token: str, session: OperatorSession) -> None:
        self._url = control_plane_url
        self._token = token
        self._session = session
        self.recorders: dict[str, ExecutionRecorder] = {}
        self._started = False

    @property
    def backlog(self) -> int:
        return sum(r.backlog for r in self.recorders.values())

    def for_organization(self, organization: str) -> ExecutionRecorder:
        recorder = self.recorders.get(organization)
        if recorder is None:
            path = f"/api/v1/platform/organizations/{quote(organization, safe='')}"
            recorder = self.recorders[organization] = ExecutionRecorder(
                self._url, self._token, self._session, path=f"{path}/executions/ingest"
            )
            if self._started:
                asyncio.get_running_loop().create_task(recorder.start())
        return recorder

    def record(self, execution: Execution, organization: str | None) -> None:
        if organization is None:  # the sidecar always names it; nothing to file it under
            logger.error("execution %s names no organisation; not recorded", execution.id)
            return
        self.for_organization(organization).record(execution)

    async def start(self) -> None:
        self._started = True
        for recorder in self.recorders.values():
            await recorder.start()

    async def stop(self) -> None:
        for recorder in self.recorders.values():
            await recorder.stop()


class NoSharedSecrets:
    """A shared gateway's gateway-wide resolver: none (the operator's keys are not the
    tenants'). Provider keys come per organisation (`ProviderRegistry.secrets_for`); what
    still asks this one — connector passwords — is refused."""

    def resolve(self, name: str) -> str:
        raise ProviderError(
            f"secret {name!r}: a shared gateway has no gateway-wide provider keys, only "
            "each organisation's own"
        )

    def bound_host(self, name: str) -> str | None:
        return None

    def connector_password(self, name: str) -> str:
        raise ProviderError(
            f"connector {name!r}: connector passwords are not served on the shared gateway"
        )
