"""Provider keys on a shared platform gateway (ADR 0012, gateways/providers/tenant_secrets.py):
every call is sent with the key of the organisation its verified decision names, and
nobody else's.

The attacks: B's call after A's provider was built (the registry's cache must not hand
B A's key); A naming a key it never stored while B stored one of that name (fail closed,
naming the secret); a call with no organisation; the operator's environment keys on a
shared gateway (refused: every tenant would spend them); an organisation id that would
leave its Vault path. Through the real gateway app too: two organisations' signed bundles
on disk, decision headers signed with the platform credential, the fake LLM over real
HTTP recording the key each call arrived with. Each organisation's keys here are an
in-memory resolver; tests/integration/test_shared_gateway_keys.py reads them from OpenBao.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.app import create_app  # noqa: TID251  (the gateway under test)
from gateways.deployments import BundleFloor  # noqa: TID251
from gateways.errors import ProviderError  # noqa: TID251
from gateways.providers import EnvSecretResolver, ProviderRegistry  # noqa: TID251
from gateways.providers.secrets import SecretResolver, VaultConnection  # noqa: TID251
from gateways.providers.tenant_secrets import (  # noqa: TID251
    EnvKeysRefused,
    VaultTenantSecrets,
    tenant_secrets_for,
)
from gateways.settings import GatewaySettings  # noqa: TID251
from gateways.tenancy import NoSharedSecrets, SharedDeploymentSource  # noqa: TID251
from policy.net.outbound import OutboundGuard
from policy.workloads import ModelConfig
from tests.fake_llm import FakeLLM, Reply, ServedApp
from tests.unit.gateways.test_providers import request
from tests.unit.gateways.test_tenancy import on_disk

A, B = str(uuid.uuid4()), str(uuid.uuid4())
HANDLE_A, HANDLE_B = str(uuid.uuid4()), str(uuid.uuid4())
KEY_A, KEY_B = "sk-alpha-" + uuid.uuid4().hex, "sk-beta-" + uuid.uuid4().hex
PLATFORM = "kgp_" + "p" * 40
LOCAL = OutboundGuard.from_setting("127.0.0.1/32")  # the fake LLM listens there


class InMemoryTenants:
    """Each organisation's stored keys (as Vault would hold them under its own path)."""

    def __init__(self, keys: Mapping[str, Mapping[str, str]]) -> None:
        self.asked: list[str] = []
        self._keys = keys

    def for_organization(self, organization: str) -> SecretResolver:
        self.asked.append(organization)
        environ: dict[str, str] = {}
        for name, value in self._keys.get(organization, {}).items():
            variable = EnvSecretResolver().variable(name)
            environ[variable], environ[variable + "_HOST"] = value, "127.0.0.1"
        return EnvSecretResolver(environ=environ)


def keyed(fake: FakeLLM, name: str = "openai-prod") -> ModelConfig:
    """A model naming the provider key `name`."""
    return ModelConfig("openai", "m", {}, fake.openai_url, name)


@pytest.fixture
async def registry() -> AsyncIterator[ProviderRegistry]:
    tenants = InMemoryTenants({A: {"openai-prod": KEY_A}, B: {"openai-prod": KEY_B}})
    registry = ProviderRegistry(NoSharedSecrets(), LOCAL, tenants=tenants)
    yield registry
    await registry.aclose()


async def test_each_call_goes_out_with_its_own_organisations_key(
    registry: ProviderRegistry, fake: FakeLLM
) -> None:
    fake.reset(lambda model, messages: Reply("ok"))
    for organization, key in ((A, KEY_A), (B, KEY_B), (A, KEY_A), (B, KEY_B)):
        provider = registry.get(keyed(fake), organization)
        await provider.complete(request())
        assert fake.headers[-1]["authorization"] == f"Bearer {key}", organization
    # Same model config, same secret name: two providers, one per organisation.
    assert registry.get(keyed(fake), A) is not registry.get(keyed(fake), B)


async def test_a_key_the_organisation_never_stored_fails_closed_whoever_else_has_it(
    fake: FakeLLM,
) -> None:
    tenants = InMemoryTenants({B: {"openai": KEY_B}})  # A stored none; B did, same name
    registry = ProviderRegistry(NoSharedSecrets(), LOCAL, tenants=tenants)
    try:
        registry.get(keyed(fake, "openai"), B)  # B's provider built and kept first
        with pytest.raises(ProviderError, match="secret 'openai' is not configured"):
            registry.get(keyed(fake, "openai"), A)
        # Nor without an organisation: there is no gateway-wide key to fall back on.
        for nobody in (None, ""):
            with pytest.raises(ProviderError, match="no organisation named"):
                registry.get(keyed(fake, "openai"), nobody)
        assert fake.headers == []  # nothing was sent anywhere
    finally:
        await registry.aclose()


async def test_environment_keys_are_refused_on_a_shared_gateway(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's key is in the pod's environment: no organisation may spend it.
    monkeypatch.setenv("KAIZEN_SECRET_OPENAI_PROD", "sk-operator")
    monkeypatch.setenv("KAIZEN_SECRET_OPENAI_PROD_HOST", "127.0.0.1")
    tenants = tenant_secrets_for(
        GatewaySettings(gateway_token=SecretStr(PLATFORM), secrets_backend="database")
    )
    assert isinstance(tenants, EnvKeysRefused)
    registry = ProviderRegistry(NoSharedSecrets(), LOCAL, tenants=tenants)
    try:
        with pytest.raises(ProviderError) as refused:
            registry.get(keyed(fake), A)
        message = str(refused.value)
        assert "'openai-prod'" in message
        assert "KAIZEN_SECRETS_BACKEND=vault" in message
        assert "sk-operator" not in message
        # Keyless providers still run.
        registry.get(ModelConfig("vllm", "m", {}, fake.openai_url), A)
        registry.get(ModelConfig("demo", "demo"), A)
    finally:
        await registry.aclose()
    resolver = tenants.for_organization(A)
    with pytest.raises(ProviderError, match="connector passwords are not served"):
        resolver.connector_password("warehouse")
    with pytest.raises(ProviderError, match="no gateway-wide provider keys"):
        NoSharedSecrets().resolve("openai-prod")


def test_an_organisation_id_that_would_leave_its_vault_path_is_refused() -> None:
    tenants = VaultTenantSecrets(VaultConnection("http://127.0.0.1:1", token="t"), prefix="k")
    for bad in ("../" + A, f"{A}/providers", "", A.upper() + "x", "org-acme"):
        with pytest.raises(ProviderError, match="is not an organisation id"):
            tenants.for_organization(bad)
    first = tenants.for_organization(A)
    assert first is tenants.for_organization(A)  # one resolver (one cache) per organisation
    assert tenants.for_organization(B) is not first
    assert first.path("openai") == f"k/{A}/providers/openai/api_key"  # type: ignore[attr-defined]


# -- through the gateway app ----------------------------------------------------------------------


def agent(name: str, handle: str, secret: str, fake: FakeLLM) -> dict[str, Any]:
    model = {"provider": "openai", "name": "m", "base_url": fake.openai_url}
    return {
        "apiVersion": "kaizen.studio/v1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"model": {**model, "api_key_secret": secret}, "system_prompt": "Help."},
        "gateways": [handle],
    }


def decision(organization: str, name: str, body: bytes) -> str:
    """The x-kaizen-decision the shared sidecar signs, keyed by the platform credential."""
    key = hmac.new(PLATFORM.encode(), b"kaizen-decision-v1", hashlib.sha256).digest()
    now, decision_id = int(time.time()), uuid.uuid4().hex
    claims = {
        "decision_id": decision_id,
        "jti": decision_id,
        "sub": "apikey:ci-bot",
        "org": organization,
        "roles": ["agent-user"],
        "action": "invoke",
        "resource": f"agent:{name}",
        "channel": "api",
        "method": "POST",
        "path": f"/v1/agents/{name}/invoke",
        "bh": hashlib.sha256(body).hexdigest(),
        "iat": now,
        "exp": now + 30,
    }
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.fixture(scope="module")
def standins() -> Iterator[str]:
    """The control plane's ingest and the sidecar's /settle, accepting what is sent (this
    test does not look at them); the manifest is absent, so what is on disk is served."""

    async def accept(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"error": {"code": "not_found"}}, 404)
        body = await request.json()
        return JSONResponse({"accepted": len(body.get("executions", [])), "duplicates": 0})

    app = Starlette(routes=[Route("/{path:path}", accept, methods=["GET", "POST"])])
    served = ServedApp(app, lifespan="off")
    yield served.url
    served.stop()


def shared_gateway(directory: Path, standins: str, tenants: InMemoryTenants) -> Any:
    source = SharedDeploymentSource(directory, standins, PLATFORM, floor=BundleFloor())
    settings = GatewaySettings(
        gateway_token=SecretStr(PLATFORM),
        control_plane_url=standins,
        sidecar_url=standins,
        outbound_allow_cidrs="127.0.0.1/32",
    )
    return create_app(settings, source, tenants=tenants)


async def invoke(http: httpx.AsyncClient, organization: str, name: str) -> httpx.Response:
    """POST /v1/agents/{name}/invoke with the decision the sidecar signs for `organization`."""
    body = b'{"input": "hi"}'
    return await http.post(
        f"/v1/agents/{name}/invoke",
        content=body,
        headers={
            "x-kaizen-decision": decision(organization, name, body),
            "content-type": "application/json",
        },
    )


async def test_through_the_gateway_each_organisation_calls_with_its_own_key(
    fake: FakeLLM, tmp_path: Path, standins: str
) -> None:
    on_disk(
        tmp_path,
        A,
        HANDLE_A,
        {
            "alpha": agent("alpha", HANDLE_A, "openai-prod", fake),
            "alpha-other": agent("alpha-other", HANDLE_A, "other-prod", fake),
        },
    )
    on_disk(
        tmp_path,
        B,
        HANDLE_B,
        {
            "beta": agent("beta", HANDLE_B, "openai-prod", fake),
            "beta-other": agent("beta-other", HANDLE_B, "other-prod", fake),
        },
    )
    # B also stored "other-prod"; A did not.
    tenants = InMemoryTenants(
        {A: {"openai-prod": KEY_A}, B: {"openai-prod": KEY_B, "other-prod": "sk-b-other"}}
    )
    gateway = shared_gateway(tmp_path, standins, tenants)
    fake.reset(lambda model, messages: Reply("answered"))
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:

            async def call(organization: str, name: str) -> httpx.Response:
                return await invoke(http, organization, name)

            for organization, name, key in ((A, "alpha", KEY_A), (B, "beta", KEY_B)) * 2:
                answered = await call(organization, name)
                assert answered.status_code == 200, answered.text
                assert fake.headers[-1]["authorization"] == f"Bearer {key}"
                assert key not in answered.text
            sent = len(fake.headers)
            # B's key of the same name works for B; A's agent naming it fails closed.
            assert (await call(B, "beta-other")).status_code == 200
            assert fake.headers[-1]["authorization"] == "Bearer sk-b-other"
            refused = await call(A, "alpha-other")
            assert refused.status_code >= 400, refused.text
            assert "'other-prod' is not configured" in refused.text, refused.text
            assert "sk-b-other" not in refused.text
            # A's decision for B's agent: not A's agent at all.
            assert (await call(A, "beta-other")).status_code == 404
            assert len(fake.headers) == sent + 1  # nothing went out for A
    assert set(tenants.asked) == {A, B}


async def test_a_bundle_compiled_for_another_organisation_never_spends_its_keys(
    fake: FakeLLM, tmp_path: Path, standins: str
) -> None:
    """A's store holds a bundle signed for A's scope whose policy names B: its agents run
    for A's callers, so they must not run with B's keys (nor with A's: refused)."""
    on_disk(
        tmp_path,
        A,
        HANDLE_A,
        {"alpha": agent("alpha", HANDLE_A, "openai-prod", fake)},
        compiled_for=B,
    )
    tenants = InMemoryTenants({A: {"openai-prod": KEY_A}, B: {"openai-prod": KEY_B}})
    gateway = shared_gateway(tmp_path, standins, tenants)
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:
            refused = await invoke(http, A, "alpha")
    assert refused.status_code == 403, refused.text
    assert "not the decision's organisation's" in refused.text
    assert fake.headers == []
    assert tenants.asked == []
