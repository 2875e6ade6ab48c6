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

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import PASSWORD, PostgresDatabases, running_control_plane
from tests.e2e import sidecar_procs as procs
from tests.e2e.shared_pod import Org, create_platform_gateway, serving_shared_pod


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
class Shared:
    url: str  # Envoy
    gateway: str  # the gateway itself, around Envoy
    cp: httpx.Client
    credential: str  # the platform gateway's
    a: Org
    b: Org
    outsider: Org  # signed up before the shared gateway existed: not served by it


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
    # Sign-ups on Free: placed on the shared gateway (its own process: the shared control
    # plane's sign-ups are on Enterprise).
    yield from running_control_plane(database, tmp_path_factory.mktemp("cp"), default_plan="free")


@pytest.fixture(scope="module")
def shared(
    control_plane: procs.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shared]:
    tmp = tmp_path_factory.mktemp("shared")
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    outsider = _organisation(cp, "Outsider", "outsider-bot")
    listen, envoy_admin = procs.free_port(), procs.free_port()
    credential = create_platform_gateway(control_plane, "shared-eu", f"http://127.0.0.1:{listen}")
    a = _organisation(cp, "Alpha", "alpha-bot")
    b = _organisation(cp, "Beta", "beta-bot")
    with serving_shared_pod(control_plane.url, credential, tmp, listen, envoy_admin, (a, b)) as pod:
        try:
            yield Shared(pod.envoy, pod.gateway_url, cp, credential, a, b, outsider)
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
