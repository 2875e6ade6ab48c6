"""A shared platform gateway's deployments (gateways/tenancy.py, ADR 0012): each
organisation's from its own bundle, only what it deployed to its handle, picked by the
decision's organisation — also after a restart without the control plane (the bundles
and handles on disk, verified again). Real signed bundles, one key per organisation."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateways.deployments import BundleFloor  # noqa: TID251  (the gateway under test)
from gateways.errors import Forbidden, NotFound, ProviderError  # noqa: TID251
from gateways.tenancy import (  # noqa: TID251  (the gateway under test)
    NoSharedSecrets,
    SharedDeploymentSource,
    check_namespace,
)
from policy.bundles.bundle import build_bundle, load_bundle
from policy.bundles.bundle_store import BundleStore
from policy.bundles.keys import generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet

A, B = str(uuid.uuid4()), str(uuid.uuid4())
HANDLE_A, HANDLE_B, ELSEWHERE = (str(uuid.uuid4()) for _ in range(3))


def agent(name: str, gateways: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kaizen.studio/v1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"model": {"provider": "demo", "name": "demo"}, "system_prompt": "Help."},
        "gateways": gateways,
    }


def on_disk(
    directory: Path,
    organization: str,
    handle: str,
    agents: dict[str, Any],
    *,
    compiled_for: str | None = None,
) -> None:
    """What a shared gateway left on disk for `organization`: its verified bundle (signed
    with its own key) and its handle's id. `compiled_for`: a bundle of that scope whose
    compiled policy names another organisation (as only a faulty signer would make)."""
    pem, jwks = generate_ed25519(f"key-{organization[:8]}")
    compiled = compile_policy(
        PolicySet.from_documents([]), CompileContext(compiled_for or organization, agents=agents)
    )
    data = build_bundle(
        compiled,
        revision=1,
        signing_key=load_private_key(pem),
        kid=jwks["keys"][0]["kid"],
        scope=organization,
    )
    store = BundleStore(directory / organization, scope=organization)
    store.commit(load_bundle(data, jwks, scope=organization), jwks)
    (directory / organization / "placement.json").write_text(json.dumps({"gateway_id": handle}))


@pytest.fixture
def source(tmp_path: Path) -> SharedDeploymentSource:
    on_disk(
        tmp_path,
        A,
        HANDLE_A,
        {
            "alpha": agent("alpha", [HANDLE_A]),
            "alpha-dedicated": agent("alpha-dedicated", [ELSEWHERE]),
        },
    )
    on_disk(tmp_path, B, HANDLE_B, {"beta": agent("beta", [HANDLE_B])})
    shared = SharedDeploymentSource(
        tmp_path, "http://127.0.0.1:1", "kgp_unit_test_platform_credential", floor=BundleFloor()
    )
    assert sorted(shared.platform.load_last_known_good()) == sorted([A, B])
    return shared


def test_each_organisation_is_served_what_it_deployed_to_its_handle_only(
    source: SharedDeploymentSource,
) -> None:
    assert sorted(source.for_organization(A).agents) == ["alpha"]  # not its dedicated one
    assert sorted(source.for_organization(B).agents) == ["beta"]
    with pytest.raises(NotFound):
        source.for_organization(A).agent("beta")
    for stranger in (str(uuid.uuid4()), None):
        with pytest.raises(NotFound):
            source.for_organization(stranger)
    summary = source.summary()
    assert summary is not None
    assert (summary["organizations"], summary["agents"]) == (2, 2)


def test_a_path_naming_another_organisation_than_the_decision_is_refused() -> None:
    check_namespace(f"/o/{A}/v1/agents/alpha/invoke", A)
    check_namespace("/v1/agents/alpha/invoke", A)  # no namespace: the decision's own
    with pytest.raises(Forbidden):
        check_namespace(f"/o/{B}/v1/agents/beta/invoke", A)


async def test_an_organisation_gone_from_the_manifest_is_no_longer_served(
    source: SharedDeploymentSource, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as client:
        await source.platform.follow([A], client)  # the manifest now names A only
        await source.platform.stop()
    with pytest.raises(NotFound):
        source.for_organization(B)
    assert not (tmp_path / B).exists()  # nor served again from disk after a restart
    assert source.for_organization(A).agents


def test_no_gateway_wide_key_nor_connector_password_on_a_shared_gateway() -> None:
    secrets = NoSharedSecrets()  # each organisation's keys: tests/unit/gateways/test_shared_keys.py
    with pytest.raises(ProviderError, match="no gateway-wide provider keys"):
        secrets.resolve("openai")
    with pytest.raises(ProviderError, match="not served on the shared gateway"):
        secrets.connector_password("warehouse")
    assert secrets.bound_host("openai") is None
