"""What this gateway serves: the agents and pipelines a verified bundle deploys to it.

`DeploymentSource` is the seam. `SyncedDeploymentSource` follows the control plane: the
same long-poll, verification and last-known-good store a sidecar uses (policy.bundles.bundle_sync,
policy.bundles.bundle_store), so a deploy reaches the gateway as fast as a policy change reaches
its sidecar, and a restart serves from disk while the control plane is away.
`StaticDeploymentSource` reads one bundle file and its JWKS (`KAIZEN_GATEWAY_BUNDLE`,
`KAIZEN_GATEWAY_JWKS`), for air-gapped or test setups.

Both apply the bundle floor (`BundleFloor`: minimum revision, not-before) to every bundle,
so a fresh gateway cannot be rolled back to an old, validly signed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from policy.bundles.bundle import VerifiedBundle, claimed_scope, load_bundle
from policy.bundles.bundle_store import BundleStore, write_atomically
from policy.bundles.bundle_sync import BundleSync, InsecureControlPlane, check_control_plane_url
from policy.connectors.registry import Settings, settings_from_dict
from policy.errors import PolicyError, PolicyValidationError
from policy.workloads import AgentConfig, PipelineConfig, check_references, deployed_to

from gateways.errors import NotFound

logger = logging.getLogger(__name__)


class DeploymentError(Exception):
    """A bundle whose deployments cannot be served (the gateway keeps what it had, if any)."""


@dataclass(frozen=True)
class Deployments:
    organization_id: str
    bundle_revision: str
    key_id: str
    agents: dict[str, AgentConfig] = field(default_factory=dict)
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)
    # The settings (never a password) of the connectors the served agents name.
    connectors: dict[str, Settings] = field(default_factory=dict)

    def agent(self, name: str) -> AgentConfig:
        agent = self.agents.get(name)
        if agent is None:
            raise NotFound(f"agent {name!r} is not deployed to this gateway")
        return agent

    def pipeline(self, name: str) -> PipelineConfig:
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            raise NotFound(f"pipeline {name!r} is not deployed to this gateway")
        return pipeline


def deployments_from_bundle(bundle: VerifiedBundle, gateway_id: str | None) -> Deployments:
    """The bundle's `agents`/`pipelines` naming `gateway_id` (all when it is None).

    Agents referenced by a served pipeline or agent tool are served too (a pipeline needs
    its agents even when only the pipeline names this gateway); a reference to an agent
    the bundle does not hold at all is a DeploymentError.
    """
    kaizen = bundle.compiled.kaizen
    raw_agents = kaizen.get("agents") or {}
    raw_pipelines = kaizen.get("pipelines") or {}
    try:
        all_agents = deployed_to(raw_agents, None, "data.json agents")
        pipelines = deployed_to(raw_pipelines, gateway_id, "data.json pipelines")
        named = deployed_to(raw_agents, gateway_id, "data.json agents")
    except PolicyValidationError as exc:
        raise DeploymentError(f"bundle {bundle.revision}: {exc.format()}") from None
    agents: dict[str, AgentConfig] = {}
    pending = list(named)
    for pipeline in pipelines.values():
        if isinstance(pipeline, PipelineConfig):
            pending.extend(pipeline.agent_names())
    while pending:
        name = pending.pop()
        if name in agents or name not in all_agents:
            continue
        agent = all_agents[name]
        if not isinstance(agent, AgentConfig):
            raise DeploymentError(f"bundle {bundle.revision}: agents.{name} is not an Agent")
        agents[name] = agent
        pending.extend(agent.referenced_agents())
    typed_pipelines: dict[str, PipelineConfig] = {}
    for name, pipeline in pipelines.items():
        if not isinstance(pipeline, PipelineConfig):
            raise DeploymentError(f"bundle {bundle.revision}: pipelines.{name} is not a Pipeline")
        typed_pipelines[name] = pipeline
    problems = check_references(agents, typed_pipelines.values())
    if problems:
        raise DeploymentError(f"bundle {bundle.revision}: " + "; ".join(problems))
    connectors = _connectors(kaizen.get("connectors") or {}, agents.values(), bundle.revision)
    return Deployments(
        organization_id=bundle.compiled.organization_id,
        bundle_revision=bundle.revision,
        key_id=bundle.key_id,
        agents=dict(sorted(agents.items())),
        pipelines=typed_pipelines,
        connectors=connectors,
    )


def _connectors(
    raw: Mapping[str, Any], agents: Iterable[AgentConfig], revision: str
) -> dict[str, Settings]:
    """The served agents' connectors that the bundle describes (one it does not is refused
    when called, saying so)."""
    out: dict[str, Settings] = {}
    for agent in agents:
        for name in agent.referenced_connectors():
            settings = raw.get(name) if isinstance(raw, Mapping) else None
            if name in out or not isinstance(settings, Mapping):
                continue
            try:
                out[name] = settings_from_dict(dict(settings))
            except ValueError as error:
                raise DeploymentError(f"bundle {revision}: connectors.{name}: {error}") from None
    return out


@dataclass(frozen=True)
class BundleFloor:
    """The oldest bundle this gateway accepts: revision and signing time (Unix seconds)."""

    min_revision: int | None = None
    not_before: int | None = None


class DeploymentSource(Protocol):
    """Where deployments come from. `current()` raises DeploymentError before the first."""

    gateway_id: str | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def current(self) -> Deployments: ...


class StaticDeploymentSource:
    """One bundle file verified against one JWKS file, read once at start.

    The scope the bundle must be signed for is `scope` when given, else the scope its own
    manifest names (the signature covers it, and only keys of the JWKS can sign).
    """

    def __init__(
        self,
        bundle_path: Path,
        jwks_path: Path,
        *,
        scope: str | None = None,
        gateway_id: str | None = None,
        floor: BundleFloor = BundleFloor(),
    ) -> None:
        self.bundle_path = bundle_path
        self.jwks_path = jwks_path
        self.scope = scope
        self.gateway_id = gateway_id
        self.floor = floor
        self._current: Deployments | None = None

    async def start(self) -> None:
        try:
            data = self.bundle_path.read_bytes()
            jwks = json.loads(self.jwks_path.read_text())
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"cannot read bundle or JWKS: {exc}") from None
        scope = self.scope or claimed_scope(data)
        if scope is None:
            raise DeploymentError("bundle manifest names no scope; set KAIZEN_SCOPE")
        try:
            bundle = load_bundle(
                data,
                jwks,
                scope=scope,
                min_revision=self.floor.min_revision,
                not_before=self.floor.not_before,
            )
        except PolicyError as exc:
            raise DeploymentError(f"bundle {self.bundle_path} rejected: {exc}") from None
        self._current = deployments_from_bundle(bundle, self.gateway_id)

    async def stop(self) -> None:
        return None

    def current(self) -> Deployments:
        if self._current is None:
            raise DeploymentError("no verified bundle loaded yet")
        return self._current


class SyncedDeploymentSource:
    """Deployments from the control plane's signed bundle for this gateway's credential.

    The gateway's id (which deployments it serves) comes from settings, or from
    `GET /api/v1/gateways/self`, and is kept beside the bundle so a restart without the
    control plane serves exactly what it served before. A bundle whose deployments cannot
    be served is logged and the previous deployments stay.
    """

    def __init__(
        self,
        directory: Path,
        control_plane_url: str,
        token: str,
        *,
        gateway_id: str | None = None,
        scope: str | None = None,
        pinned_jwks: Mapping[str, Any] | None = None,
        floor: BundleFloor = BundleFloor(),
    ) -> None:
        self.directory = directory
        self.store = BundleStore(
            directory,
            scope=scope,
            pinned_jwks=pinned_jwks,
            min_revision=floor.min_revision,
            not_before=floor.not_before,
        )
        self.sync = BundleSync(self.store, control_plane_url, token)
        self.gateway_id = gateway_id or self._remembered_id()
        self.last_error: str | None = None
        self._current: Deployments | None = None
        self._task: asyncio.Task[None] | None = None
        self.store.subscribe(self._on_bundle)

    async def start(self) -> None:
        self.store.load_last_known_good()
        self._task = asyncio.create_task(self.sync.run(), name="gateway-bundle-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def current(self) -> Deployments:
        if self._current is None:
            refused = self.sync.last_refusal
            reason = (
                self.last_error
                or self.sync.last_error
                or (f"last bundle refused: {refused}" if refused else None)
                or "waiting for the control plane"
            )
            raise DeploymentError(f"no verified bundle with deployments yet ({reason})")
        return self._current

    def _on_bundle(self, verified: VerifiedBundle) -> None:
        discovered = (self.sync.gateway or {}).get("id")
        if isinstance(discovered, str) and discovered != self.gateway_id:
            self.gateway_id = discovered
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                body = json.dumps({"id": discovered}).encode()
                write_atomically(self.directory / GATEWAY_FILE, body)
            except OSError as exc:  # serving goes on; only a restart without the CP suffers
                logger.error("cannot remember this gateway's id in %s: %s", self.directory, exc)
        if self.gateway_id is None:
            self.last_error = "this gateway's id is not known yet"
            return
        try:
            self._current = deployments_from_bundle(verified, self.gateway_id)
        except DeploymentError as exc:
            self.last_error = str(exc)
            logger.error("%s; keeping bundle %s", exc, self._revision())
            return
        self.last_error = None
        logger.info(
            "serving bundle %s: %d agent(s), %d pipeline(s)",
            verified.revision,
            len(self._current.agents),
            len(self._current.pipelines),
        )

    def _remembered_id(self) -> str | None:
        try:
            value = json.loads((self.directory / GATEWAY_FILE).read_bytes()).get("id")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def _revision(self) -> str:
        return self._current.bundle_revision if self._current is not None else "none"


GATEWAY_FILE = "gateway.json"


def deployment_source(
    *,
    bundle: Path | None,
    jwks: Path | None,
    scope: str | None,
    gateway_id: str | None,
    state_dir: Path,
    control_plane_url: str,
    token: str,
    floor: BundleFloor = BundleFloor(),
    allow_insecure: bool = False,
) -> DeploymentSource:
    """Static when a bundle file is configured (with its JWKS), else the control plane's
    (with the JWKS pinned when one is configured)."""
    try:
        # Checked in both modes: executions go to the control plane with the credential.
        check_control_plane_url(control_plane_url, allow_insecure=allow_insecure)
    except InsecureControlPlane as exc:
        raise DeploymentError(str(exc)) from None
    if bundle is None:
        pinned = _read_jwks(jwks) if jwks is not None else None
        return SyncedDeploymentSource(
            state_dir / "bundles",
            control_plane_url,
            token,
            gateway_id=gateway_id,
            scope=scope,
            pinned_jwks=pinned,
            floor=floor,
        )
    if jwks is None:
        raise DeploymentError(
            "static deployments need KAIZEN_GATEWAY_JWKS beside KAIZEN_GATEWAY_BUNDLE "
            "(unset the bundle to follow the control plane)"
        )
    return StaticDeploymentSource(bundle, jwks, scope=scope, gateway_id=gateway_id, floor=floor)


def _read_jwks(path: Path) -> Mapping[str, Any]:
    try:
        jwks = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeploymentError(f"KAIZEN_GATEWAY_JWKS {path} is not a readable JWKS: {exc}") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise DeploymentError(f"KAIZEN_GATEWAY_JWKS {path} has no 'keys' list")
    return jwks
