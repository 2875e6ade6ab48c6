"""The gateway's deployments follow the control plane's signed bundle (SyncedDeploymentSource):
it serves what names its gateway id, remembers that id beside the last-known-good bundle so
a restart without the control plane serves the same, and keeps serving when a new bundle's
deployments are unusable. Against the control-plane stand-in of test_sidecar_sync (a real
HTTP server speaking docs/runtime-protocols.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateways.deployments import DeploymentError, SyncedDeploymentSource  # noqa: TID251
from policy.bundles.bundle_store import BundleStore
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from policy.workloads import parse_workload_source
from tests.integration.test_sidecar_sync import (
    ORG,
    TOKEN,
    Running,
    until,
)
from tests.integration.test_sidecar_sync import control_plane as control_plane  # fixture

AGENT = """\
kind: Agent
metadata: {name: %s}
spec:
  model: {provider: demo, name: demo}
"""


def _entry(name: str, gateways: list[str]) -> dict[str, Any]:
    (agent,) = parse_workload_source(AGENT % name)
    return {**agent.to_dict(), "gateways": gateways}


def _deploy(running: Running, revision: int, **agents: dict[str, Any]) -> None:
    standin = running.standin
    standin.compiled = compile_policy(
        PolicySet.from_documents([]), CompileContext(ORG, agents=agents)
    )
    standin.publish(revision)


def _persisted_revision(directory: Path) -> int | None:
    stored = BundleStore(directory, scope=ORG).load_last_known_good()
    return stored.revision_number if stored is not None else None


def _served(source: SyncedDeploymentSource) -> set[str] | None:
    try:
        return set(source.current().agents)
    except DeploymentError:
        return None


async def test_serves_its_own_deployments_and_restarts_without_the_control_plane(
    control_plane: Running, tmp_path: Path
) -> None:
    _deploy(
        control_plane,
        1,
        mine=_entry("mine", ["gw-1"]),
        theirs=_entry("theirs", ["gw-2"]),
    )
    source = SyncedDeploymentSource(tmp_path, control_plane.url, TOKEN)
    with pytest.raises(DeploymentError, match="no verified bundle"):
        source.current()
    await source.start()
    try:
        await until(lambda: _served(source) == {"mine"})
        assert source.gateway_id == "gw-1"  # asked of the control plane

        _deploy(control_plane, 2, mine=_entry("mine", ["gw-1"]), more=_entry("more", ["gw-1"]))
        await until(lambda: _served(source) == {"mine", "more"})
        await until(lambda: _persisted_revision(tmp_path) == 2)  # written after enforcing
    finally:
        await source.stop()

    await control_plane.stop()
    restarted = SyncedDeploymentSource(tmp_path, control_plane.url, TOKEN)
    await restarted.start()
    try:
        assert _served(restarted) == {"mine", "more"}  # from disk, for the remembered id
        assert restarted.current().bundle_revision == "2"
    finally:
        await restarted.stop()


async def test_unusable_deployments_keep_the_previous_ones(
    control_plane: Running, tmp_path: Path
) -> None:
    _deploy(control_plane, 1, mine=_entry("mine", ["gw-1"]))
    source = SyncedDeploymentSource(tmp_path, control_plane.url, TOKEN, gateway_id="gw-1")
    await source.start()
    try:
        await until(lambda: _served(source) == {"mine"})
        broken = {**_entry("broken", ["gw-1"]), "spec": {"model": {"provider": "nope"}}}
        _deploy(control_plane, 2, mine=_entry("mine", ["gw-1"]), broken=broken)
        await until(lambda: source.last_error is not None)
        assert "broken" in (source.last_error or "")
        assert _served(source) == {"mine"}
        assert source.current().bundle_revision == "1"
    finally:
        await source.stop()
