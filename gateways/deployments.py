"""What this gateway serves: the agents and pipelines a verified bundle deploys to it.

`DeploymentSource` is the seam: the static source below reads one bundle file and its JWKS
(`KAIZEN_GATEWAY_BUNDLE`, `KAIZEN_GATEWAY_JWKS`); the control-plane bundle sync plugs in
behind the same interface and calls `deployments_from_bundle` on each new verified bundle.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from policy.bundle import MAX_BUNDLE_BYTES, VerifiedBundle, load_bundle
from policy.errors import PolicyError, PolicyValidationError
from policy.workloads import AgentConfig, PipelineConfig, check_references, deployed_to

from gateways.errors import NotFound


class DeploymentError(Exception):
    """A bundle whose deployments cannot be served (the gateway keeps what it had, if any)."""


@dataclass(frozen=True)
class Deployments:
    organization_id: str
    bundle_revision: str
    key_id: str
    agents: dict[str, AgentConfig] = field(default_factory=dict)
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)

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
    return Deployments(
        organization_id=bundle.compiled.organization_id,
        bundle_revision=bundle.revision,
        key_id=bundle.key_id,
        agents=dict(sorted(agents.items())),
        pipelines=typed_pipelines,
    )


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
    ) -> None:
        self.bundle_path = bundle_path
        self.jwks_path = jwks_path
        self.scope = scope
        self.gateway_id = gateway_id
        self._current: Deployments | None = None

    async def start(self) -> None:
        try:
            data = self.bundle_path.read_bytes()
            jwks = json.loads(self.jwks_path.read_text())
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"cannot read bundle or JWKS: {exc}") from None
        scope = self.scope or _claimed_scope(data)
        try:
            bundle = load_bundle(data, jwks, scope=scope)
        except PolicyError as exc:
            raise DeploymentError(f"bundle {self.bundle_path} rejected: {exc}") from None
        self._current = deployments_from_bundle(bundle, self.gateway_id)

    async def stop(self) -> None:
        return None

    def current(self) -> Deployments:
        if self._current is None:
            raise DeploymentError("no verified bundle loaded yet")
        return self._current


def _claimed_scope(data: bytes) -> str:
    """The manifest's `metadata.scope`, read before verification only to choose the scope."""
    import gzip

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            raw = gz.read(MAX_BUNDLE_BYTES + 1)
        if len(raw) > MAX_BUNDLE_BYTES:
            raise DeploymentError("bundle larger than allowed")
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("/") == ".manifest" and member.isfile():
                    handle = tar.extractfile(member)
                    manifest: Any = json.loads(handle.read() if handle else b"{}")
                    scope = manifest.get("metadata", {}).get("scope")
                    if isinstance(scope, str) and scope:
                        return scope
    except (OSError, EOFError, tarfile.TarError, ValueError, AttributeError):
        pass
    raise DeploymentError("bundle manifest names no scope; set KAIZEN_GATEWAY_BUNDLE_SCOPE")


def static_source(
    bundle: Path | None, jwks: Path | None, scope: str | None, gateway_id: str | None
) -> StaticDeploymentSource:
    """The static source from settings; both paths are required (DeploymentError otherwise)."""
    if bundle is None or jwks is None:
        raise DeploymentError(
            "no deployment source: set KAIZEN_GATEWAY_BUNDLE and KAIZEN_GATEWAY_JWKS "
            "(control-plane sync is wired by the runtime)"
        )
    return StaticDeploymentSource(bundle, jwks, scope=scope, gateway_id=gateway_id)
