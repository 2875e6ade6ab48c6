"""M14 end to end for object stores: an agent reads and writes objects through a governed
S3 or Azure Blob connector, each call decided by the sidecar for its bucket and key.

Real parts as in tests/e2e/test_connectors_e2e.py — a control-plane process (PostgreSQL +
Redis, secrets in OpenBao), `kaizen-studio sidecar` and `kaizen-studio gateway`, Envoy in
front — and, since neither service can run here, moto's S3 server and Microsoft's azurite
(tests/object_stores.py: local servers speaking their APIs, request signatures checked;
the test runs once against each). The model is the fake LLM,
scripted to call the connector's tool with the arguments of each case.

Through Envoy: a get under `docs/reports/` is allowed and answered from the object; a get
outside that prefix and any call on the `secret` bucket are denied by Rego rules; a put is
held for approval (nothing written), approved by the owner, and the caller's retry with the
grant writes it once; the same over MCP (the gateway's MCP server through Envoy, the grant
in the same header). The decision log shows the object and operation of every call, and
the secret key is in no API answer, no bundle and no log line of the three processes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import PASSWORD
from tests.e2e import sidecar_procs as procs
from tests.e2e.connector_pod import VaultControlPlane, bundle_files, serving_pod
from tests.fake_llm import FakeLLM, Reply, last_user_text, running_fake_llm
from tests.object_stores import AzuriteServer, S3Server

POLICY = """\
kind: RolePolicy
metadata: {name: file-roles}
spec:
  roles:
    - name: clerk
      permissions:
        - {resource: "agent:*", actions: [invoke]}
        - {resource: "connector:files", actions: [read, write]}
        - {resource: "mcp:server", actions: [connect, list]}
  bindings:
    - {subject: "user:%(email)s", role: clerk}
---
kind: RegoPolicy
metadata: {name: file-guard}
spec:
  rego: |
    package kaizen.abac.file_guard
    import rego.v1
    deny contains "the secret bucket is off limits" if {
      input.resource.type == "connector"
      input.resource.attributes.bucket == "secret"
    }
    deny contains "docs are read under reports/ only" if {
      input.resource.type == "connector"
      input.action == "read"
      input.resource.attributes.bucket == "docs"
      not startswith(input.resource.attributes.object, "docs/reports/")
    }
    require_approval contains "puts need approval" if {
      input.resource.type == "connector"
      input.action == "write"
    }
"""
AGENT = """\
kind: Agent
metadata: {name: clerk, description: Files reports}
spec:
  model: {provider: openai, name: fake-model, base_url: "%(llm)s"}
  system_prompt: Answer from the files.
  budget: {price_per_1m_tokens: {input: 0.01, output: 0.01}}
  tools:
    - connector: {name: files, operations: [objects.list, objects.get, objects.put]}
"""
CALLS: dict[str, dict[str, Any]] = {
    "q1": {"operation": "objects.get", "bucket": "docs", "key": "reports/q1.txt"},
    "list": {"operation": "objects.list", "bucket": "docs", "prefix": "reports/"},
    "draft": {"operation": "objects.get", "bucket": "docs", "key": "drafts/plan.txt"},
    "payroll": {"operation": "objects.get", "bucket": "secret", "key": "payroll.csv"},
    "put": {"operation": "objects.put", "bucket": "inbox", "key": "e2e/note.txt",
            "content": "filed by the clerk"},
    "put over mcp": {"operation": "objects.put", "bucket": "inbox", "key": "e2e/mcp.txt",
                     "content": "filed over MCP"},
}  # fmt: skip


def script(model: str, messages: list[dict[str, Any]]) -> Reply:
    """Call the connector with the case's arguments, then answer with what it returned."""
    if messages[-1].get("role") == "tool":
        return Reply(text=f"from the files: {last_user_text(messages)}")
    return Reply(tool_calls=[("objects_files", CALLS[last_user_text(messages)])])


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    yield from running_fake_llm()


@pytest.fixture(params=["s3", "azure_blob"])
def store(request: pytest.FixtureRequest) -> tuple[str, S3Server | AzuriteServer]:
    fixture = "moto_s3" if request.param == "s3" else "azurite"
    return request.param, request.getfixturevalue(fixture)


def _connector(kind: str, server: S3Server | AzuriteServer) -> tuple[dict[str, Any], str, str]:
    """The connector's settings, its secret key and the setting naming its endpoint."""
    if isinstance(server, S3Server):
        settings = {"endpoint_url": server.url, "access_key_id": server.access_key_id}
        return settings, server.secret_access_key, "endpoint_url"
    settings = {"account_url": server.url, "account_name": server.account_name}
    return settings, server.account_key, "account_url"


def test_an_agent_reads_and_writes_objects_through_a_governed_connector(
    store: tuple[str, S3Server | AzuriteServer],
    vault_control_plane: VaultControlPlane,
    fake_llm: FakeLLM,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    control_plane, prefix, vault = (
        vault_control_plane.process,
        vault_control_plane.prefix,
        vault_control_plane.vault,
    )
    fake_llm.reset(script)
    kind, server = store
    endpoint, credential_secret, endpoint_field = _connector(kind, server)
    answers: list[str] = []
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    request.addfinalizer(cp.close)

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = cp.request(method, path, headers=admin, **kwargs)
        answers.append(response.text)
        return response

    email = f"owner-{secrets.token_hex(3)}@example.com"
    owner = cp.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "organization": "M14 objects"},
    ).json()
    admin = {"Authorization": f"Bearer {owner['access_token']}"}
    clerk_email = f"clerk-{secrets.token_hex(3)}@example.com"
    member = call(
        "POST",
        "/api/v1/users",
        json={"email": clerk_email, "password": PASSWORD, "role": "developer"},
    )
    assert member.status_code == 201, member.text
    clerk = cp.post("/api/v1/auth/login", json={"email": clerk_email, "password": PASSWORD}).json()
    assert call("POST", "/api/v1/policies", json={"source": POLICY % {"email": clerk_email}})
    assert call("POST", "/api/v1/policies/publish", json={}).status_code == 201
    connector = call(
        "POST",
        "/api/v1/connectors",
        json={
            "name": "files",
            "type": kind,
            "settings": {
                **endpoint,
                "read_only": False,
                "max_bytes": 4096,
            },
            "password": credential_secret,
        },
    )
    assert connector.status_code == 201, connector.text
    tested = call("POST", f"/api/v1/connectors/{connector.json()['id']}/test")
    assert tested.json()["ok"] is True, tested.text
    agent = call("POST", "/api/v1/agents", json={"source": AGENT % {"llm": fake_llm.openai_url}})
    assert agent.status_code == 201, agent.text

    with serving_pod(
        call,
        control_plane.url,
        tmp_path,
        agent="clerk",
        organization_id=owner["organization_id"],
        vault=vault,
        vault_prefix=prefix,
    ) as pod:
        envoy = pod.envoy
        user = {"Authorization": f"Bearer {clerk['access_token']}"}

        def ask(question: str, grant: str | None = None) -> httpx.Response:
            response = httpx.post(
                f"{envoy}/v1/agents/clerk/invoke",
                json={"input": question},
                headers={**user, **({"Kaizen-Nested-Approval": grant} if grant else {})},
                timeout=30,
            )
            answers.append(response.text)
            return response

        def answered(response: httpx.Response) -> dict[str, Any]:
            assert response.status_code == 200, response.text
            return dict(json.loads(response.json()["output"].removeprefix("from the files: ")))

        # Allowed: a get and a listing under docs/reports/.
        assert answered(ask("q1"))["content"] == "q1 revenue: 10"
        listed = answered(ask("list"))
        assert [o["key"] for o in listed["objects"]] == [
            "reports/q1.txt",
            "reports/q2.txt",
            "reports/q3.txt",
        ]

        # Denied: outside the prefix, and the secret bucket; the call is refused naming why.
        draft = ask("draft")
        assert draft.status_code == 403, draft.text
        assert "docs are read under reports/ only" in draft.json()["error"]["message"]
        payroll = ask("payroll")
        assert payroll.status_code == 403, payroll.text
        message = payroll.json()["error"]["message"]
        assert "the secret bucket is off limits" in message
        assert "secret/payroll.csv" in message
        assert "ada,100000" not in payroll.text

        # A put is held for approval: nothing is written.
        held = ask("put")
        assert held.status_code == 403, held.text
        details = held.json()["error"]["details"]
        assert details["outcome"] == "require_approval"
        assert details["object"] == "inbox/e2e/note.txt"
        assert server.read("inbox", "e2e/note.txt") is None

        # The decision log: the object and operation of every call.
        def decisions() -> list[dict[str, Any]] | None:
            found = call(
                "GET", "/api/v1/decisions", params={"resource": "connector:files", "limit": 50}
            ).json()["items"]
            return found if len(found) >= 5 else None

        logged = procs.eventually(decisions, 30, "the connector decisions in the log")
        seen = {
            (
                d["action"],
                d["input"]["resource"]["attributes"]["operation"],
                d["input"]["resource"]["attributes"]["object"],
                d["outcome"],
            )
            for d in logged
        }
        assert seen >= {
            ("read", "objects.get", "docs/reports/q1.txt", "allow"),
            ("read", "objects.list", "docs/reports/", "allow"),
            ("read", "objects.get", "docs/drafts/plan.txt", "deny"),
            ("read", "objects.get", "secret/payroll.csv", "deny"),
            ("write", "objects.put", "inbox/e2e/note.txt", "require_approval"),
        }

        # The owner approves; the clerk retries with the grant: written, once.
        def approval() -> dict[str, Any] | None:
            items = call("GET", "/api/v1/approvals").json()["items"]
            return next((a for a in items if a["id"] == details["approval_request_id"]), None)

        held_request = procs.eventually(approval, 30, "the approval request of the held put")
        assert (held_request["action"], held_request["resource"]) == ("write", "connector:files")
        approved = call("POST", f"/api/v1/approvals/{held_request['id']}/approve", json={})
        assert approved.status_code == 200, approved.text
        mine = cp.get(f"/api/v1/approvals/{held_request['id']}", headers=user).json()
        answers.append(json.dumps(mine))
        written = answered(ask("put", grant=mine["grant"]))
        assert (written["key"], written["size"]) == ("e2e/note.txt", 18)
        assert server.read("inbox", "e2e/note.txt") == b"filed by the clerk"
        again = ask("put", grant=mine["grant"])
        assert again.status_code == 403, again.text
        assert "already used" in again.json()["error"]["message"]

        # Over MCP (the gateway's MCP server, through Envoy): a held put names its approval
        # request, and the retry with the grant in the same header writes it once.
        def over_mcp(grant: str | None = None) -> Any:
            headers = {**user, **({"Kaizen-Nested-Approval": grant} if grant else {})}

            async def call_tool() -> Any:
                async with (
                    httpx2.AsyncClient(headers=headers, timeout=30) as http,
                    Client(streamable_http_client(f"{envoy}/mcp", http_client=http)) as client,
                ):
                    return await client.call_tool("clerk", {"input": "put over mcp"})

            result = asyncio.run(call_tool())
            answers.append(str(result))
            return result

        held_mcp = over_mcp()
        assert held_mcp.is_error, held_mcp
        error = held_mcp.structured_content["error"]
        request_id = error["details"]["approval_request_id"]
        assert "Kaizen-Nested-Approval".lower() in held_mcp.content[0].text
        assert error["details"]["object"] == "inbox/e2e/mcp.txt"
        assert server.read("inbox", "e2e/mcp.txt") is None
        held_mcp_request = procs.eventually(
            lambda: next(
                (
                    a
                    for a in call("GET", "/api/v1/approvals").json()["items"]
                    if a["id"] == request_id
                ),
                None,
            ),
            30,
            "the approval request of the put held over MCP",
        )
        approved = call("POST", f"/api/v1/approvals/{held_mcp_request['id']}/approve", json={})
        assert approved.status_code == 200, approved.text
        grant = cp.get(f"/api/v1/approvals/{request_id}", headers=user).json()["grant"]
        written_mcp = over_mcp(grant)
        assert not written_mcp.is_error, written_mcp
        assert server.read("inbox", "e2e/mcp.txt") == b"filed over MCP"
        assert over_mcp(grant).is_error, "a grant writes once"

        bundle = cp.get(
            f"/api/v1/bundles/{owner['organization_id']}/bundle.tar.gz",
            headers={"Authorization": f"Bearer {pod.token}"},
        )
        assert bundle.status_code == 200, bundle.text
        files = bundle_files(bundle.content)
        data = json.loads(files["data.json"])
        assert data["kaizen"]["connectors"]["files"][endpoint_field] == server.url
        logs = {
            "control plane": procs.full_output(control_plane.process),
            "gateway": procs.full_output(pod.gateway),
            "sidecar": procs.full_output(pod.sidecar),
        }

    assert all(logs.values()), "every process wrote log lines to search"
    for where, text in (
        *(("an API answer", a) for a in answers),
        *(("the bundle", f) for f in files.values()),
        *logs.items(),
    ):
        assert credential_secret not in text, f"the secret key is in {where}"
    assert credential_secret.encode() not in bundle.content
