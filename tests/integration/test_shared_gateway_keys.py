"""Provider keys on a shared platform gateway, from a real OpenBao (ADR 0012): two
organisations store a key of the same name through the control plane's API (`vault`
backend); one shared gateway, holding only a Vault token whose policy is the documented
`read` on `<mount>/data/<prefix>/+/providers/*`, serves both. Every call reaches the (fake,
local) LLM with its own organisation's key; a key only the other organisation stored
fails closed, naming the secret, and nothing is sent.

Real parts: OpenBao (`bao server -dev`), PostgreSQL and Redis under the control plane, the
gateway app with the fake LLM over real HTTP, bundles signed with each organisation's own
key. Stand-ins, said plainly: the control plane's ingest and the sidecar's /settle
(the catch-all of tests/unit/gateways/test_shared_keys.py; not looked at here) and the
sidecar itself (its decision header is signed here with the platform credential, as the
sidecar signs it — tests/e2e/test_shared_gateway_envoy.py runs the real one).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import hvac.exceptions
import pytest
from pydantic import SecretStr

from control_plane.services.secrets import open_secret_store
from gateways.app import create_app  # noqa: TID251  (the gateway under test)
from gateways.deployments import BundleFloor  # noqa: TID251
from gateways.settings import GatewaySettings  # noqa: TID251
from gateways.tenancy import SharedDeploymentSource  # noqa: TID251
from tests.conftest import Account, Stack, signup
from tests.fake_llm import FakeLLM, Reply
from tests.integration.test_secrets import Bao, fake, openbao
from tests.unit.gateways.test_shared_keys import PLATFORM, agent, decision, standins
from tests.unit.gateways.test_tenancy import on_disk

__all__ = ["fake", "openbao", "standins"]


async def _store(
    client: httpx.AsyncClient, account: Account, name: str, key: str, fake: FakeLLM
) -> None:
    stored = await client.put(
        f"/api/v1/secrets/providers/{name}",
        json={"api_key": key, "base_url": fake.openai_url},
        headers=account.headers,
    )
    assert stored.status_code == 201, stored.text


def _gateway_token(bao: Bao, prefix: str) -> str:
    """A token with the platform gateway's documented policy, and nothing else."""
    admin = bao.client()
    policy = f'path "secret/data/{prefix}/+/providers/*" {{\n  capabilities = ["read"]\n}}\n'
    admin.sys.create_or_update_policy(name=f"platform-gateway-{prefix}", policy=policy)
    created = admin.auth.token.create(policies=[f"platform-gateway-{prefix}"], ttl="10m")
    return str(created["auth"]["client_token"])


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_each_organisation_calls_with_its_own_key_from_openbao(
    stack: Stack,
    client: httpx.AsyncClient,
    openbao: Bao,
    fake: FakeLLM,
    standins: str,
    tmp_path: Path,
) -> None:
    prefix = f"kaizen-{uuid.uuid4().hex[:8]}"
    a, b = await signup(client, "Alpha"), await signup(client, "Beta")
    key_a, key_b = "sk-alpha-" + uuid.uuid4().hex, "sk-beta-" + uuid.uuid4().hex
    key_b_other = "sk-beta-other-" + uuid.uuid4().hex
    settings = stack.settings.model_copy(
        update={
            "secrets_backend": "vault",
            "vault_addr": openbao.url,
            "vault_token": SecretStr(openbao.token),
            "vault_path_prefix": prefix,
        }
    )
    original, stack.app.state.secrets = (
        stack.app.state.secrets,
        open_secret_store(settings, stack.db),
    )
    try:
        await _store(client, a, "openai-prod", key_a, fake)
        await _store(client, b, "openai-prod", key_b, fake)
        await _store(client, b, "other-prod", key_b_other, fake)  # A stores none of this name
    finally:
        await stack.app.state.secrets.close()
        stack.app.state.secrets = original

    token = _gateway_token(openbao, prefix)
    narrow = hvac.Client(url=openbao.url, token=token)
    with pytest.raises(hvac.exceptions.Forbidden):  # the policy reads provider keys only
        narrow.secrets.kv.v2.read_secret_version(
            path=f"{prefix}/{a.organization_id}/connectors/x/password",
            raise_on_deleted_version=True,
        )

    on_disk(
        tmp_path,
        a.organization_id,
        handle_a := str(uuid.uuid4()),
        {
            "alpha": agent("alpha", handle_a, "openai-prod", fake),
            "alpha-other": agent("alpha-other", handle_a, "other-prod", fake),
        },
    )
    on_disk(
        tmp_path,
        b.organization_id,
        handle_b := str(uuid.uuid4()),
        {
            "beta": agent("beta", handle_b, "openai-prod", fake),
            "beta-other": agent("beta-other", handle_b, "other-prod", fake),
        },
    )
    gateway_settings = GatewaySettings(
        gateway_token=SecretStr(PLATFORM),
        control_plane_url=standins,
        sidecar_url=standins,
        secrets_backend="vault",
        vault_addr=openbao.url,
        vault_token=SecretStr(token),
        vault_path_prefix=prefix,
        outbound_allow_cidrs="127.0.0.1/32",  # the fake LLM listens there
    )
    source = SharedDeploymentSource(tmp_path, standins, PLATFORM, floor=BundleFloor())
    gateway = create_app(gateway_settings, source)  # the keys: from its settings (Vault)
    fake.reset(lambda model, messages: Reply("answered"))
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:

            async def call(organization: str, name: str) -> httpx.Response:
                body = b'{"input": "hi"}'
                return await http.post(
                    f"/v1/agents/{name}/invoke",
                    content=body,
                    headers={
                        "x-kaizen-decision": decision(organization, name, body),
                        "content-type": "application/json",
                    },
                )

            calls = ((a, "alpha", key_a), (b, "beta", key_b), (b, "beta-other", key_b_other))
            for account, name, key in calls * 2:
                answered = await call(account.organization_id, name)
                assert answered.status_code == 200, answered.text
                assert fake.headers[-1]["authorization"] == f"Bearer {key}"
                assert key not in answered.text
            sent = len(fake.headers)
            refused = await call(a.organization_id, "alpha-other")
            assert refused.status_code >= 400, refused.text
            assert "secret 'other-prod' is not stored in Vault" in refused.text
            assert key_b_other not in refused.text
            assert len(fake.headers) == sent  # nothing went out with anybody's key
