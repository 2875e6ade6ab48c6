"""Provider keys on one shared platform gateway (ADR 0012), through real processes: the
control plane (PostgreSQL, Redis, `vault` secrets backend), OpenBao (`bao server -dev`),
one `kaizen-studio sidecar` and one `kaizen-studio gateway` holding the platform
credential — the gateway's Vault token has only the documented policy, read on
`secret/data/<prefix>/+/providers/*` — Envoy in front, and the fake LLM (local, speaking
the OpenAI wire protocol) recording the key of every request.

Two Free organisations, placed on the shared gateway at sign-up, each store a provider key
named `openai-prod` through the API and deploy an agent naming it. Each one's API key
reaches the LLM with its own organisation's key only; A deleting its second key makes A's
agent naming it fail closed, naming the secret, although B still holds one of that name.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL, PostgresDatabases
from tests.e2e import sidecar_procs as procs
from tests.e2e.shared_pod import Org, create_platform_gateway, serving_shared_pod
from tests.fake_llm import FakeLLM, Reply, running_fake_llm
from tests.integration.test_secrets import Bao

LOCAL = "127.0.0.1/32"  # the fake LLM listens there


def policy(agent: str) -> str:
    return f"""\
kind: RolePolicy
metadata: {{name: agent-roles}}
spec:
  roles:
    - name: agent-user
      permissions:
        - {{resource: "agent:{agent}", actions: [invoke]}}
        - {{resource: "agent:{agent}-other", actions: [invoke]}}
  bindings:
    - {{subject: "apikey:ci-bot", role: agent-user}}
"""


def agent_source(name: str, key: str, llm: str) -> str:
    return f"""\
kind: Agent
metadata: {{name: {name}}}
spec:
  model: {{provider: openai, name: fake-model, base_url: "{llm}", api_key_secret: {key}}}
  system_prompt: You help.
  budget: {{price_per_1m_tokens: {{input: 0.01, output: 0.01}}}}
"""


def organisation(cp: httpx.Client, name: str, agent: str, keys: dict[str, str], llm: str) -> Org:
    """Signs up (placed on the shared gateway), stores `keys`, deploys `agent` (naming
    `openai-prod`) and `agent-other` (naming `other-prod`) to its handle there."""
    email = f"{name.lower()}-{secrets.token_hex(3)}@example.com"
    signed = cp.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "organization": name}
    )
    assert signed.status_code == 201, signed.text
    owner = signed.json()
    admin = {"Authorization": f"Bearer {owner['access_token']}"}
    for secret, value in keys.items():
        stored = cp.put(
            f"/api/v1/secrets/providers/{secret}",
            json={"api_key": value, "base_url": llm},
            headers=admin,
        )
        assert stored.status_code == 201, stored.text
        assert value not in stored.text
    api_key = cp.post("/api/v1/api-keys", json={"name": "ci-bot"}, headers=admin)
    assert api_key.status_code == 201, api_key.text
    for agent_name, secret in ((agent, "openai-prod"), (f"{agent}-other", "other-prod")):
        made = cp.post(
            "/api/v1/agents",
            json={"source": agent_source(agent_name, secret, llm)},
            headers=admin,
        )
        assert made.status_code == 201, made.text
    created = cp.post("/api/v1/policies", json={"source": policy(agent)}, headers=admin)
    assert created.status_code == 201, created.text
    assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    [handle] = [
        g
        for g in cp.get("/api/v1/gateways", headers=admin).json()["items"]
        if g["mode"] == "platform"
    ]
    for agent_name in (agent, f"{agent}-other"):
        deployed = cp.post(
            "/api/v1/deployments",
            json={"gateway_id": handle["id"], "kind": "agent", "name": agent_name},
            headers=admin,
        )
        assert deployed.status_code == 201, deployed.text
    return Org(owner["organization_id"], admin, api_key.json()["key"], agent, email)


def gateway_vault_token(bao: Bao, prefix: str) -> str:
    """The platform gateway's Vault token: the documented policy and nothing else."""
    admin = bao.client()
    name = f"platform-gateway-{prefix}"
    rules = f'path "secret/data/{prefix}/+/providers/*" {{\n  capabilities = ["read"]\n}}\n'
    admin.sys.create_or_update_policy(name=name, policy=rules)
    return str(admin.auth.token.create(policies=[name], ttl="30m")["auth"]["client_token"])


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    yield from running_fake_llm()


@pytest.fixture(scope="module")
async def database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create(f"e2e_shkeys_{secrets.token_hex(3)}")


def test_each_organisation_reaches_the_llm_with_its_own_key_only(
    database: str, openbao: Bao, fake: FakeLLM, tmp_path: Path
) -> None:
    prefix = f"e2e-{secrets.token_hex(4)}"
    vault = {"VAULT_ADDR": openbao.url}
    control_plane = procs.ControlPlane.configured(
        tmp_path / "cp",
        database_url=database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        default_plan="free",  # sign-ups on Free: placed on the shared gateway
        secrets_backend="vault",
        vault_path_prefix=prefix,
        outbound_allow_cidrs=LOCAL,
    )
    control_plane.env.update(vault, VAULT_TOKEN=openbao.token)
    control_plane.start()
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    try:
        listen, envoy_admin = procs.free_port(), procs.free_port()
        credential = create_platform_gateway(
            control_plane, "shared-eu", f"http://127.0.0.1:{listen}"
        )
        key_a, key_b = f"sk-alpha-{secrets.token_hex(8)}", f"sk-beta-{secrets.token_hex(8)}"
        a_other, b_other = f"sk-a2-{secrets.token_hex(8)}", f"sk-b2-{secrets.token_hex(8)}"
        llm = fake.openai_url
        a = organisation(
            cp, "Alpha", "alpha-bot", {"openai-prod": key_a, "other-prod": a_other}, llm
        )
        b = organisation(cp, "Beta", "beta-bot", {"openai-prod": key_b, "other-prod": b_other}, llm)
        with serving_shared_pod(
            control_plane.url,
            credential,
            tmp_path,
            listen,
            envoy_admin,
            (a, b),
            KAIZEN_OUTBOUND_ALLOW_CIDRS=LOCAL,
            KAIZEN_SECRETS_BACKEND="vault",
            KAIZEN_VAULT_PATH_PREFIX=prefix,
            VAULT_TOKEN=gateway_vault_token(openbao, prefix),
            **vault,
        ) as pod:
            fake.reset(lambda model, messages: Reply("answered"))

            def invoke(org: Org, agent: str) -> httpx.Response:
                return httpx.post(
                    f"http://127.0.0.1:{listen}/o/{org.id}/v1/agents/{agent}/invoke",
                    headers={"Authorization": f"Bearer {org.key}"},
                    json={"input": "hi"},
                    timeout=20,
                )

            for org, agent, key in ((a, "alpha-bot", key_a), (b, "beta-bot", key_b)) * 2:
                answered = invoke(org, agent)
                assert answered.status_code == 200, (answered.text, procs.output(pod.gateway))
                assert fake.headers[-1]["authorization"] == f"Bearer {key}"
                assert key not in answered.text

            # A deletes its `other-prod`; B keeps one of that name. A's agent naming it
            # now fails closed, naming the secret; nothing goes out with B's key.
            gone = cp.delete("/api/v1/secrets/providers/other-prod", headers=a.admin)
            assert gone.status_code == 204, gone.text
            sent = len(fake.headers)
            refused = invoke(a, "alpha-bot-other")
            assert refused.status_code >= 400, refused.text
            assert "secret 'other-prod' is not stored in Vault" in refused.text, refused.text
            assert b_other not in refused.text
            assert len(fake.headers) == sent
            theirs = invoke(b, "beta-bot-other")
            assert theirs.status_code == 200, theirs.text
            assert fake.headers[-1]["authorization"] == f"Bearer {b_other}"
            # A's key naming B's agent is still refused at the sidecar, before any key.
            assert invoke(a, "beta-bot").status_code in (401, 403)
            assert all(h["authorization"] != f"Bearer {a_other}" for h in fake.headers)
    finally:
        cp.close()
        control_plane.stop()
