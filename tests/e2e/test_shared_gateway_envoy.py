"""Two organisations on one shared platform gateway (ADR 0012), through real processes:
the control plane (PostgreSQL, Redis), the operator's `kaizen-studio platform-gateway`,
one `kaizen-studio sidecar` and one `kaizen-studio gateway` holding the platform
credential, and Envoy in front.

Both organisations sign up on Free and are placed on the shared gateway; each creates its
own agent (the demo provider) and publishes its own policy for an API key named `ci-bot`
with a budget of 3 a day. Every attack is performed through Envoy: A's key on B's path,
or naming B in a header, or calling B's agent; A's user token on B's path; A spending its
budget to the end while B's same-named budget stays whole; A's auditors never seeing a
decision or execution of B's; and a call around Envoy straight to the gateway. The
control plane refuses a decision the platform gateway forges for an organisation it does
not serve, and its bundle.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL, PostgresDatabases
from tests.e2e import sidecar_procs as procs


def policy(agent: str, owner: str) -> str:
    return f"""\
kind: RolePolicy
metadata: {{name: agent-roles}}
spec:
  roles:
    - name: agent-user
      permissions:
        - {{resource: "agent:{agent}", actions: [invoke]}}
        - {{resource: "agent:{agent}-gated", actions: [invoke]}}
  bindings:
    - {{subject: "apikey:ci-bot", role: agent-user}}
    - {{subject: "user:{owner}", role: agent-user}}
---
kind: RegoPolicy
metadata: {{name: guardrails}}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    require_approval contains "the gated agent needs approval" if {{
      input.resource.id == "agent:{agent}-gated"
    }}
---
kind: BudgetPolicy
metadata: {{name: spend}}
spec:
  budgets:
    - {{name: ci-daily, scope: "apikey:ci-bot", metric: executions, limit: 3, period: day}}
"""


@dataclass
class Org:
    id: str
    admin: dict[str, str]  # the owner's Authorization header
    key: str  # the API key ci-bot
    agent: str
    email: str  # the owner's


@dataclass
class Shared:
    url: str  # Envoy
    gateway: str  # the gateway itself, around Envoy
    cp: httpx.Client
    credential: str  # the platform gateway's
    a: Org
    b: Org
    outsider: Org  # signed up before the shared gateway existed: not served by it


def _operator(control_plane: procs.ControlPlane, *args: str) -> str:
    done = subprocess.run(
        [str(procs.BIN / "kaizen-studio"), "platform-gateway", *args],
        env=control_plane.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def agent_source(name: str) -> str:
    return (
        f"kind: Agent\nmetadata: {{name: {name}}}\nspec:\n"
        "  model: {provider: demo, name: demo}\n  system_prompt: You help.\n"
    )


def _organisation(cp: httpx.Client, name: str, agent: str, *, publish: bool = True) -> Org:
    email = f"{name.lower()}-{secrets.token_hex(3)}@example.com"
    signed = cp.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "organization": name}
    )
    assert signed.status_code == 201, signed.text
    owner = signed.json()
    admin = {"Authorization": f"Bearer {owner['access_token']}"}
    key = cp.post("/api/v1/api-keys", json={"name": "ci-bot"}, headers=admin)
    assert key.status_code == 201, key.text
    if publish:
        for name in (agent, f"{agent}-gated"):
            made = cp.post("/api/v1/agents", json={"source": agent_source(name)}, headers=admin)
            assert made.status_code == 201, made.text
        source = policy(agent, email)
        created = cp.post("/api/v1/policies", json={"source": source}, headers=admin)
        assert created.status_code == 201, created.text
        assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    gateways = cp.get("/api/v1/gateways", headers=admin).json()["items"]
    shared = [g for g in gateways if g["mode"] == "platform"]
    for name in (agent, f"{agent}-gated") if shared else ():
        # Placed on the shared gateway at sign-up: deploy there as anywhere.
        deployed = cp.post(
            "/api/v1/deployments",
            json={"gateway_id": shared[0]["id"], "kind": "agent", "name": name},
            headers=admin,
        )
        assert deployed.status_code == 201, deployed.text
        endpoint = deployed.json()["endpoints"]["api"]
        assert endpoint.endswith(f"/o/{owner['organization_id']}/v1/agents/{name}/invoke")
    return Org(owner["organization_id"], admin, key.json()["key"], agent, email)


@pytest.fixture(scope="module")
async def database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create(f"e2e_shared_{secrets.token_hex(3)}")


@pytest.fixture(scope="module")
def control_plane(
    database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[procs.ControlPlane]:
    cp = procs.ControlPlane.configured(
        tmp_path_factory.mktemp("cp"),
        database_url=database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        default_plan="free",  # sign-ups on Free: placed on the shared gateway
    )
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


def _wait_serving(
    port: int, process: subprocess.Popen[bytes], control_plane: str, credential: str, *orgs: Org
) -> None:
    """Until the sidecar or gateway on `port` serves every one of `orgs` at the newest
    revision the platform manifest names (its /healthz lists `organisation:revision`): an
    older one may lack the API key or deployment the test made last."""
    deadline = time.monotonic() + 30
    while True:
        manifest = httpx.get(
            f"{control_plane}/api/v1/platform/manifest",
            headers={"Authorization": f"Bearer {credential}"},
            timeout=5,
        ).json()
        newest = {o["organization"]: o["revision"] for o in manifest["organizations"]}
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
        except (httpx.TransportError, ValueError):
            health = {}
        served = set(str(health.get("bundle_revision")).split(","))
        if all(f"{org.id}:{newest.get(org.id)}" in served for org in orgs):
            return
        assert process.poll() is None, procs.output(process)
        assert time.monotonic() < deadline, f"not serving them all at {newest}: {health}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def shared(
    control_plane: procs.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shared]:
    tmp = tmp_path_factory.mktemp("shared")
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    outsider = _organisation(cp, "Outsider", "outsider-bot")
    gateway_port, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    listen, envoy_admin = procs.free_port(), procs.free_port()
    said = _operator(control_plane, "create", "shared-eu", "--url", f"http://127.0.0.1:{listen}")
    credential = said.split("KAIZEN_PLATFORM_TOKEN of its sidecars): ", 1)[1].strip()
    assert credential.startswith("kgp_"), said
    a = _organisation(cp, "Alpha", "alpha-bot")
    b = _organisation(cp, "Beta", "beta-bot")
    gateway_env = procs.clean_env(
        KAIZEN_HOME=str(tmp / "gateway"),
        KAIZEN_GATEWAY_PORT=str(gateway_port),
        KAIZEN_GATEWAY_TOKEN=credential,  # the platform credential: shared mode
        KAIZEN_CONTROL_PLANE_URL=control_plane.url,
        KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_port}",
    )
    with (
        procs.running(
            procs.spawn([str(procs.BIN / "kaizen-studio"), "gateway"], env=gateway_env)
        ) as gateway,
        procs.running(
            procs.start_sidecar(
                tmp / "home",
                grpc_port,
                http_port,
                KAIZEN_PLATFORM_TOKEN=credential,
                KAIZEN_CONTROL_PLANE_URL=control_plane.url,
                KAIZEN_REDIS_URL=REDIS_URL,
                KAIZEN_REDIS_PREFIX=f"{REDIS_PREFIX}shared-{secrets.token_hex(3)}:",
                wait=False,
            )
        ) as sidecar,
        procs.running(
            procs.start_envoy(
                procs.envoy_config(
                    listen, envoy_admin, grpc_port, gateway_port, sidecar_http=http_port
                ),
                tmp,
                envoy_admin,
            )
        ),
    ):
        _wait_serving(http_port, sidecar, control_plane.url, credential, a, b)
        _wait_serving(gateway_port, gateway, control_plane.url, credential, a, b)
        try:
            yield Shared(
                f"http://127.0.0.1:{listen}",
                f"http://127.0.0.1:{gateway_port}",
                cp,
                credential,
                a,
                b,
                outsider,
            )
        finally:
            cp.close()


def invoke(shared: Shared, path: str, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{shared.url}{path}",
        headers={"Authorization": f"Bearer {token}", **headers},
        json={"input": "hi"},
        timeout=10,
    )


def decision_id(response: httpx.Response) -> str:
    return str(response.headers["x-kaizen-decision-id"])


def test_each_organisations_key_reaches_only_its_own_agents(shared: Shared) -> None:
    a, b = shared.a, shared.b
    mine = invoke(shared, f"/o/{a.id}/v1/agents/alpha-bot/invoke", a.key)
    assert mine.status_code == 200, mine.text
    assert "demo provider" in mine.text  # the agent ran, from A's own bundle
    theirs = invoke(shared, f"/o/{b.id}/v1/agents/beta-bot/invoke", b.key)
    assert theirs.status_code == 200, theirs.text

    # A's key naming B: in the path, in a header, or B's agent without a namespace.
    on_their_path = invoke(shared, f"/o/{b.id}/v1/agents/beta-bot/invoke", a.key)
    assert on_their_path.status_code == 403, on_their_path.text
    assert "the path names organisation" in " ".join(on_their_path.json()["reasons"])
    in_a_header = invoke(
        shared, "/v1/agents/beta-bot/invoke", a.key, **{"X-Kaizen-Organization": b.id}
    )
    assert in_a_header.status_code == 403, in_a_header.text
    assert "X-Kaizen-Organization" in " ".join(in_a_header.json()["reasons"])
    their_agent = invoke(shared, "/v1/agents/beta-bot/invoke", a.key)
    assert their_agent.status_code == 403, their_agent.text

    # A's owner's own access token on B's path: the same.
    token = a.admin["Authorization"].removeprefix("Bearer ")
    assert invoke(shared, f"/o/{b.id}/v1/agents/beta-bot/invoke", token).status_code == 403
    # Around Envoy, straight to the gateway: no sidecar decision, no call.
    direct = httpx.post(
        f"{shared.gateway}/o/{b.id}/v1/agents/beta-bot/invoke",
        headers={"Authorization": f"Bearer {a.key}"},
        json={"input": "hi"},
        timeout=10,
    )
    assert direct.status_code == 401, direct.text
    # The outsider's key is no organisation this gateway serves.
    outsider = invoke(
        shared, f"/o/{shared.outsider.id}/v1/agents/outsider-bot/invoke", shared.outsider.key
    )
    assert outsider.status_code == 401, outsider.text


def test_one_organisation_spending_its_budget_never_moves_the_others(shared: Shared) -> None:
    a, b = shared.a, shared.b
    # A's ci-bot spends what is left of its 3 a day (one went in the test above), then more.
    outcomes = [invoke(shared, "/v1/agents/alpha-bot/invoke", a.key).status_code for _ in range(4)]
    assert outcomes == [200, 200, 403, 403], outcomes
    refused = invoke(shared, "/v1/agents/alpha-bot/invoke", a.key)
    assert any("ci-daily" in r for r in refused.json()["reasons"]), refused.text
    # B's budget of the same name, for a key of the same name: one spent above, two left.
    assert [invoke(shared, "/v1/agents/beta-bot/invoke", b.key).status_code for _ in range(3)] == [
        200,
        200,
        403,
    ]


def test_each_organisations_auditors_see_its_decisions_and_none_of_the_others(
    shared: Shared,
) -> None:
    a, b = shared.a, shared.b
    own = decision_id(invoke(shared, f"/o/{a.id}/v1/agents/beta-bot/invoke", a.key))
    attempt = decision_id(invoke(shared, f"/o/{b.id}/v1/agents/beta-bot/invoke", a.key))
    theirs = decision_id(invoke(shared, f"/o/{b.id}/v1/agents/alpha-bot/invoke", b.key))

    def listed(org: Org) -> set[str]:
        answer = shared.cp.get("/api/v1/decisions", params={"limit": 500}, headers=org.admin)
        assert answer.status_code == 200, answer.text
        return {item["decision_id"] for item in answer.json()["items"]}

    deadline = time.monotonic() + 30
    while not ({own, attempt} <= listed(a) and theirs in listed(b)):
        assert time.monotonic() < deadline, "the decision logs never arrived"
        time.sleep(0.2)
    # The attempt on B's path is A's record: A's auditors see it, B's never do.
    assert theirs not in listed(a)
    assert not {own, attempt} & listed(b)

    # What ran is each organisation's own execution record, shipped by the gateway.
    def executed(org: Org) -> set[str]:
        answer = shared.cp.get("/api/v1/executions", params={"limit": 500}, headers=org.admin)
        assert answer.status_code == 200, answer.text
        return {item["name"] for item in answer.json()["items"]}

    deadline = time.monotonic() + 30
    while not (executed(a) and executed(b)):
        assert time.monotonic() < deadline, "the executions never arrived"
        time.sleep(0.2)
    assert executed(a) == {"alpha-bot"}
    assert executed(b) == {"beta-bot"}


def test_a_decision_forged_for_an_organisation_the_gateway_does_not_serve_is_refused(
    shared: Shared,
) -> None:
    now = datetime.now(UTC).isoformat()
    forged = {
        "decision_id": f"forged-{secrets.token_hex(4)}",
        "time": now,
        "input": {"principal": {"id": "apikey:ci-bot", "organization": shared.outsider.id}},
        "result": {"outcome": "allow", "reasons": []},
    }
    answer = shared.cp.post(
        f"/api/v1/platform/organizations/{shared.outsider.id}/decisions/ingest",
        json={"decisions": [forged]},
        headers={"Authorization": f"Bearer {shared.credential}"},
    )
    assert answer.status_code == 403, answer.text
    stored = shared.cp.get(
        "/api/v1/decisions", params={"limit": 500}, headers=shared.outsider.admin
    ).json()["items"]
    assert forged["decision_id"] not in {item["decision_id"] for item in stored}
    # Nor may its bundle be read with the platform credential.
    bundle = shared.cp.get(
        f"/api/v1/bundles/{shared.outsider.id}/bundle.tar.gz",
        headers={"Authorization": f"Bearer {shared.credential}"},
    )
    assert bundle.status_code == 404, bundle.text


def test_each_organisation_sees_the_shared_sidecar_in_its_own_fleet_view(shared: Shared) -> None:
    def instances(org: Org) -> list[dict[str, object]]:
        [handle] = shared.cp.get("/api/v1/gateways", headers=org.admin).json()["items"]
        shown = shared.cp.get(f"/api/v1/gateways/{handle['id']}", headers=org.admin).json()
        return list(shown["instances"])

    deadline = time.monotonic() + 30
    while not (instances(shared.a) and instances(shared.b)):
        assert time.monotonic() < deadline, "the shared sidecar never reported"
        time.sleep(0.2)
    for org in (shared.a, shared.b):  # one per sidecar worker that reported so far
        assert all(i["bundle_revision"] is not None for i in instances(org)), instances(org)


def test_an_approval_grant_works_for_its_own_organisation_only(shared: Shared) -> None:
    a, b = shared.a, shared.b
    email = f"approver-{secrets.token_hex(3)}@example.com"
    made = shared.cp.post(
        "/api/v1/users",
        json={"email": email, "password": PASSWORD, "role": "security_admin"},
        headers=a.admin,
    )
    assert made.status_code == 201, made.text
    login = shared.cp.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    approver = {"Authorization": f"Bearer {login.json()['access_token']}"}
    token = a.admin["Authorization"].removeprefix("Bearer ")
    gated = f"/o/{a.id}/v1/agents/alpha-bot-gated/invoke"

    held = invoke(shared, gated, token)
    assert held.status_code == 403, held.text
    assert held.json()["outcome"] == "require_approval"
    request_id = held.json()["approval_request_id"]
    deadline = time.monotonic() + 30  # the request opens when the decision is ingested
    while (
        answer := shared.cp.post(f"/api/v1/approvals/{request_id}/approve", headers=approver)
    ).status_code == 404:
        assert time.monotonic() < deadline, "the approval request never opened"
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    grant = shared.cp.get(f"/api/v1/approvals/{request_id}", headers=a.admin).json()["grant"]
    assert grant

    # B's owner presenting A's grant for B's own gated agent: still held.
    b_token = b.admin["Authorization"].removeprefix("Bearer ")
    theirs = invoke(
        shared,
        f"/o/{b.id}/v1/agents/beta-bot-gated/invoke",
        b_token,
        **{"X-Kaizen-Approval": grant},
    )
    assert theirs.status_code == 403, theirs.text
    assert theirs.json()["outcome"] == "require_approval"
    # A's owner, with it, once.
    retried = invoke(shared, gated, token, **{"X-Kaizen-Approval": grant})
    assert retried.status_code == 200, retried.text
    again = invoke(shared, gated, token, **{"X-Kaizen-Approval": grant})
    assert again.status_code == 403, again.text
