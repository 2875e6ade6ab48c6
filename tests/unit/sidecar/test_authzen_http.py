"""The AuthZEN 1.0 routes over a real socket, with the certification scenario's fixture.

The fixture policy (authorization-api-1_0-scenario, C-1) written as our documents, and the
scenario's requests sent as a PEP sends them; every evaluation must reach the decision log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budgets import InMemoryReservationBook
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.http_server import SidecarHttp, start_http_server
from policy.bundles.bundle import build_bundle, load_bundle
from policy.bundles.gateway_binding import binding_of_credential
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from policy.engine.budgets import InMemoryBudgetLedger
from tests.e2e.sidecar_procs import free_port
from tests.unit.sidecar.factory import AUDIENCE, ISSUER, ORG, Keys, access_token, sha256

GATEWAY_TOKEN = "kgw_authzen_unit_credential"
PEP_KEY = "ks_authzen_pep_0123456789"  # scopes [decisions:evaluate]
WILD_KEY = "ks_authzen_wild_0123456789"  # scopes [*:*]: not a PDP client by accident
PLAIN_KEY = "ks_authzen_plain_0123456789"  # no scopes
OTHER_KEY = "ks_authzen_other_0123456789"  # scopes [agents:invoke]
BASE_URL = "https://pdp.example.com"

# The certification fixture (C-1.4): alice may read and write records, bob only read unless
# the application says he is an admin there; archived records are read-only except for
# admins; hard deletes are refused. Plus one held action, for require_approval.
FIXTURE_POLICY = """\
kind: RolePolicy
metadata: {name: records}
spec:
  roles:
    - name: record-editor
      permissions:
        - {resource: "record:*", actions: [read, write, delete, purge]}
  bindings:
    - {subject: "user:alice", role: record-editor}
    - {subject: "user:bob", role: record-editor}
    - {subject: "apikey:bot", role: record-editor}
---
kind: RegoPolicy
metadata: {name: record-rules}
spec:
  rego: |
    package kaizen.abac.records
    import rego.v1
    reviewers := {"user:bob"}
    app_admin if input.principal.attributes.role == "admin"
    deny contains "reviewers write only as admins" if {
      input.action == "write"
      input.principal.id in reviewers
      not app_admin
    }
    deny contains "archived records are read-only" if {
      input.action == "write"
      input.resource.attributes.status == "archived"
      not app_admin
    }
    deny contains "hard deletes are not allowed" if {
      input.action == "delete"
      not input.action_properties.soft == true
    }
    require_approval contains "purging a record needs approval" if input.action == "purge"
"""


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)


@pytest.fixture
def sink() -> Sink:
    return Sink()


def authorizer_for(
    keys: Keys, sink: Sink, organization: str = ORG, api_keys: list[dict[str, Any]] | None = None
) -> Authorizer:
    """An Authorizer over the fixture policy, signed for `organization` with these keys."""
    compiled = compile_policy(
        PolicySet.from_sources([("records.yaml", FIXTURE_POLICY)]),
        CompileContext(organization_id=organization, api_keys=api_keys or [], jwks=keys.jwks),
    )
    bundle = build_bundle(
        compiled, revision=7, signing_key=keys.private, kid=keys.kid, scope=organization
    )
    holder = EngineHolder(
        InMemoryBudgetLedger(),
        issuer=ISSUER,
        audience=AUDIENCE,
        gateway_binding=binding_of_credential(GATEWAY_TOKEN),
    )
    holder.on_bundle(load_bundle(bundle, keys.jwks, scope=organization))
    return Authorizer(
        holder,
        replay_guard=InMemoryReplayGuard(),
        reservations=InMemoryReservationBook(),
        workspace="prod",
        sink=sink,
    )


@pytest.fixture
def fixture_authorizer(keys: Keys, sink: Sink) -> Authorizer:
    return authorizer_for(
        keys,
        sink,
        api_keys=[
            {"name": "pep", "key_hash": sha256(PEP_KEY), "scopes": ["decisions:evaluate"]},
            {"name": "wild", "key_hash": sha256(WILD_KEY), "scopes": ["*:*"]},
            {"name": "plain", "key_hash": sha256(PLAIN_KEY)},
            {"name": "other", "key_hash": sha256(OTHER_KEY), "scopes": ["agents:invoke"]},
            # Subjects of type apikey (never callers here): a scoped one and one with a role.
            {"name": "bot", "key_hash": sha256("ks_authzen_bot_0"), "scopes": ["record:read"]},
            {"name": "roleful", "key_hash": sha256("ks_authzen_r_0"), "roles": ["record-editor"]},
            {"name": "gone", "key_hash": sha256("ks_authzen_g_0"), "expires_at": 1_000_000_000},
        ],
    )


@asynccontextmanager
async def serving(authorizer: Authorizer, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = SidecarHttp(authorizer, max_body=1 << 20, **options)
    server = await start_http_server(app, "127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.close()
        await app.close_connections()
        await server.wait_closed()


@pytest.fixture
async def pdp(fixture_authorizer: Authorizer) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(
        fixture_authorizer, gateway_token=GATEWAY_TOKEN, authzen_base_url=BASE_URL
    ) as client:
        client.headers["Authorization"] = f"Bearer {PEP_KEY}"
        yield client


def ask(who: str, verb: str, record: str, **properties: Any) -> dict[str, Any]:
    """A request about a user and a record; `subject=`, `action=`, `resource=` add properties."""
    request: dict[str, Any] = {
        "subject": {"type": "user", "id": who},
        "action": {"name": verb},
        "resource": {"type": "record", "id": record},
    }
    for entity, value in properties.items():
        request[entity]["properties"] = value
    return request


# C-1.4: the eight decisions the certification harness checks.
FIXTURE_DECISIONS = [
    (ask("alice", "read", "record-1"), True),
    (ask("alice", "write", "record-1"), True),
    (ask("bob", "read", "record-1"), True),
    (ask("bob", "write", "record-1"), False),
    (ask("alice", "write", "record-2", resource={"status": "archived"}), False),
    (
        ask("bob", "write", "record-2", subject={"role": "admin"}, resource={"status": "archived"}),
        True,
    ),
    (ask("alice", "delete", "record-1", action={"soft": True}), True),
    (ask("alice", "delete", "record-1", action={"soft": False}), False),
]


@pytest.mark.parametrize(("request_body", "expected"), FIXTURE_DECISIONS)
async def test_certification_fixture_decisions(
    pdp: httpx.AsyncClient, sink: Sink, request_body: dict[str, Any], expected: bool
) -> None:
    response = await pdp.post("/access/v1/evaluation", json=request_body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["decision"] is expected
    context = body["context"]
    assert context["outcome"] == ("allow" if expected else "deny")
    assert context["bundle_revision"] == "7"
    # Logged like any other decision: same id, the mapped input, the caller named.
    (record,) = sink.records
    assert record["decision_id"] == context["decision_id"]
    assert record["result"]["outcome"] == context["outcome"]
    assert record["input"]["principal"]["id"] == f"user:{request_body['subject']['id']}"
    assert record["input"]["request"] == {
        "method": "POST",
        "path": "/access/v1/evaluation",
        "source_ip": "127.0.0.1",
        "caller": "apikey:pep",
    }


async def test_deny_reasons_and_require_approval_in_context(pdp: httpx.AsyncClient) -> None:
    denied = (await pdp.post("/access/v1/evaluation", json=ask("bob", "write", "record-1"))).json()
    assert denied["context"]["reasons"] == ["reviewers write only as admins"]
    held = (await pdp.post("/access/v1/evaluation", json=ask("alice", "purge", "record-1"))).json()
    assert held["decision"] is False
    assert held["context"]["outcome"] == "require_approval"
    assert held["context"]["approval_request_id"] == held["context"]["decision_id"]
    assert held["context"]["reasons"] == ["purging a record needs approval"]
    stranger = (await pdp.post("/access/v1/evaluation", json=ask("carol", "read", "r"))).json()
    assert stranger["decision"] is False
    assert stranger["context"]["reasons"] == ["no role grants read on record:r in workspace prod"]


async def test_optional_context_unknown_fields_and_idempotency(pdp: httpx.AsyncClient) -> None:
    # C-2.2.3, C-2.2.8, C-2.2.9, C-2.6
    with_context = {
        **ask("alice", "read", "record-1"),
        "context": {"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"},
    }
    extra = {
        **ask(
            "alice",
            "read",
            "record-1",
            subject={"department": "Sales", "role": "manager"},
            action={"method": "GET"},
            resource={"status": "active", "owner": "bob"},
        ),
        "foo": "bar",
        "futureField": {"nested": True},
    }
    for request_body in (with_context, extra, extra, extra):
        response = await pdp.post("/access/v1/evaluation", json=request_body)
        assert (response.status_code, response.json()["decision"]) == (200, True)


async def test_x_request_id_is_echoed(pdp: httpx.AsyncClient) -> None:
    request_id = "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"
    answered = await pdp.post(
        "/access/v1/evaluation",
        json=ask("alice", "read", "record-1"),
        headers={"X-Request-ID": request_id},
    )
    assert answered.headers["x-request-id"] == request_id
    refused = await pdp.post("/access/v1/evaluation", json={}, headers={"X-Request-ID": "r-2"})
    assert (refused.status_code, refused.headers["x-request-id"]) == (400, "r-2")
    without = await pdp.post("/access/v1/evaluation", json=ask("alice", "read", "record-1"))
    assert without.status_code == 200
    assert "x-request-id" not in without.headers


@pytest.mark.parametrize(
    ("content", "content_type", "field"),
    [
        (b'{"action": {"name": "read"}, "resource": {"type": "r", "id": "1"}}', None, "subject"),
        (b"{", None, "body"),
        (b"", None, "body"),
        (b'"alice"', None, "body"),
        (b'{"subject": {"type": "user", "id": "alice"}}', "text/plain", "content-type"),
        (b'{"subject": "alice", "action": {"name": "r"}, "resource": {}}', None, "subject"),
    ],
)
async def test_malformed_requests_are_400_naming_the_field_and_never_logged(
    pdp: httpx.AsyncClient, sink: Sink, content: bytes, content_type: str | None, field: str
) -> None:
    headers = {"Content-Type": content_type or "application/json"}
    for path in ("/access/v1/evaluation", "/access/v1/evaluations"):
        response = await pdp.post(path, content=content, headers=headers)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "bad_request"
        assert error["details"][0]["field"] == field
        assert error["message"].startswith(f"{field}: ")
        assert "decision" not in response.json()
    assert sink.records == []


async def test_batch_with_defaults_in_request_order(pdp: httpx.AsyncClient, sink: Sink) -> None:
    # C-3.2.2, C-3.2.3, C-3.2.4, C-3.2.5, C-3.2.7
    cases = [
        (
            {
                "subject": {"type": "user", "id": "bob"},
                "resource": {"type": "record", "id": "record-1"},
                "evaluations": [{"action": {"name": "read"}}, {"action": {"name": "write"}}],
            },
            [True, False],
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": "write"},
                "evaluations": [
                    {"resource": {"type": "record", "id": "record-1", "properties": {}}},
                    {
                        "resource": {
                            "type": "record",
                            "id": "record-2",
                            "properties": {"status": "archived"},
                        }
                    },
                ],
            },
            [True, False],
        ),
        (
            {
                "action": {"name": "write"},
                "resource": {
                    "type": "record",
                    "id": "record-2",
                    "properties": {"status": "archived"},
                },
                "evaluations": [
                    {"subject": {"type": "user", "id": "alice"}},
                    {"subject": {"type": "user", "id": "bob", "properties": {"role": "admin"}}},
                ],
            },
            [False, True],
        ),
        (
            {"evaluations": [ask("alice", "read", "record-1"), ask("bob", "write", "record-1")]},
            [
                True,
                False,
            ],
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": "write"},
                "resource": {
                    "type": "record",
                    "id": "record-1",
                    "properties": {"status": "active"},
                },
                "evaluations": [
                    {},
                    {
                        "resource": {
                            "type": "record",
                            "id": "record-2",
                            "properties": {"status": "archived"},
                        }
                    },
                ],
            },
            [True, False],
        ),
    ]
    for request_body, expected in cases:
        response = await pdp.post("/access/v1/evaluations", json=request_body)
        assert response.status_code == 200
        body = response.json()
        assert "decision" not in body
        assert [item["decision"] for item in body["evaluations"]] == expected
    ids = [record["decision_id"] for record in sink.records]
    assert len(ids) == len(set(ids)) == 10


async def test_batch_item_errors_are_closed_and_the_rest_decided(
    pdp: httpx.AsyncClient, sink: Sink
) -> None:
    # C-3.4.1: execute_all; the second evaluation misses `resource`.
    response = await pdp.post(
        "/access/v1/evaluations",
        json={
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "read"},
            "options": {"evaluations_semantic": "execute_all"},
            "evaluations": [{"resource": {"type": "record", "id": "record-1"}}, {}],
        },
    )
    assert response.status_code == 200
    first, second = response.json()["evaluations"]
    assert first["decision"] is True
    assert second == {
        "decision": False,
        "context": {
            "error": {
                "status": 400,
                "message": "evaluations[1].resource: is required",
                "field": "evaluations[1].resource",
            }
        },
    }
    assert len(sink.records) == 1  # only what was evaluated is a decision


async def test_batch_without_evaluations_answers_as_a_single_evaluation(
    pdp: httpx.AsyncClient,
) -> None:
    # C-3.4.2, C-3.4.3
    for request_body in (
        ask("alice", "read", "record-1"),
        {**ask("alice", "read", "record-1"), "evaluations": []},
    ):
        body = (await pdp.post("/access/v1/evaluations", json=request_body)).json()
        assert body["decision"] is True
        assert "evaluations" not in body


@pytest.mark.parametrize(
    ("semantic", "expected"),
    [
        ("execute_all", [True, False, True]),
        ("deny_on_first_deny", [True, False]),
        ("permit_on_first_permit", [True]),
    ],
)
async def test_evaluations_semantics(
    pdp: httpx.AsyncClient, sink: Sink, semantic: str, expected: list[bool]
) -> None:
    # The spec's "Evaluate read action for three documents using all three semantics".
    request_body = {
        "subject": {"type": "user", "id": "bob"},
        "options": {"evaluations_semantic": semantic},
        "evaluations": [
            {"action": {"name": "read"}, "resource": {"type": "record", "id": "1"}},
            {"action": {"name": "write"}, "resource": {"type": "record", "id": "2"}},
            {"action": {"name": "read"}, "resource": {"type": "record", "id": "3"}},
        ],
    }
    body = (await pdp.post("/access/v1/evaluations", json=request_body)).json()
    assert [item["decision"] for item in body["evaluations"]] == expected
    # A short circuit evaluates (and logs) nothing after the deciding item.
    assert len(sink.records) == len(expected)


async def test_deny_on_first_deny_stops_at_an_item_error_too(pdp: httpx.AsyncClient) -> None:
    request_body = {
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "read"},
        "options": {"evaluations_semantic": "deny_on_first_deny"},
        "evaluations": [{}, {"resource": {"type": "record", "id": "1"}}],
    }
    body = (await pdp.post("/access/v1/evaluations", json=request_body)).json()
    assert [item["decision"] for item in body["evaluations"]] == [False]


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Basic dXNlcjpwYXNz", 401),
        ("Bearer ks_not_a_key_of_this_bundle", 401),
        ("Bearer kgw_wrong_gateway_credential", 401),
        (f"Bearer {PLAIN_KEY}", 403),
        (f"Bearer {WILD_KEY}", 403),
        (f"Bearer {OTHER_KEY}", 403),
    ],
)
async def test_only_the_gateway_or_a_key_with_the_decision_scope_may_ask(
    pdp: httpx.AsyncClient, sink: Sink, authorization: str | None, status: int
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    pdp.headers.pop("Authorization")
    for path in ("/access/v1/evaluation", "/access/v1/evaluations"):
        response = await pdp.post(path, json=ask("alice", "read", "record-1"), headers=headers)
        assert response.status_code == status
        assert "decision" not in response.json()
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert sink.records == []


async def test_a_users_access_token_is_not_a_pdp_credential(
    pdp: httpx.AsyncClient, keys: Keys
) -> None:
    token = access_token(keys, "alice", role="owner")
    response = await pdp.post(
        "/access/v1/evaluation",
        json=ask("alice", "read", "record-1"),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401


async def test_the_gateway_credential_may_ask(pdp: httpx.AsyncClient, sink: Sink) -> None:
    response = await pdp.post(
        "/access/v1/evaluation",
        json=ask("alice", "read", "record-1"),
        headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"},
    )
    assert response.json()["decision"] is True
    assert sink.records[0]["input"]["request"]["caller"] == "gateway"


async def test_no_bundle_means_no_allow(
    pdp: httpx.AsyncClient, fixture_authorizer: Authorizer
) -> None:
    fixture_authorizer.holder.current = None
    as_key = await pdp.post("/access/v1/evaluation", json=ask("alice", "read", "record-1"))
    assert as_key.status_code == 503
    as_gateway = await pdp.post(
        "/access/v1/evaluation",
        json=ask("alice", "read", "record-1"),
        headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"},
    )
    body = as_gateway.json()
    assert (body["decision"], body["context"]["reasons"]) == (
        False,
        ["no verified policy bundle loaded"],
    )


async def test_methods_and_routes(pdp: httpx.AsyncClient) -> None:
    assert (await pdp.get("/access/v1/evaluation")).status_code == 405
    assert (await pdp.post("/access/v1/search/subject", json={})).status_code == 404
    assert (await pdp.post("/.well-known/authzen-configuration")).status_code == 405


async def test_discovery_metadata(pdp: httpx.AsyncClient) -> None:
    # C-6: open (no credential), JSON, the configured identifier, never the Host header.
    response = await pdp.get(
        "/.well-known/authzen-configuration",
        headers={"Authorization": "", "Host": "evil.example"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "policy_decision_point": BASE_URL,
        "access_evaluation_endpoint": f"{BASE_URL}/access/v1/evaluation",
        "access_evaluations_endpoint": f"{BASE_URL}/access/v1/evaluations",
    }


async def test_no_discovery_metadata_without_a_base_url(fixture_authorizer: Authorizer) -> None:
    async with serving(fixture_authorizer) as client:
        response = await client.get("/.well-known/authzen-configuration")
    assert response.status_code == 404
    assert "KAIZEN_SIDECAR_AUTHZEN_BASE_URL" in response.json()["error"]["message"]


async def test_another_organisations_pep_key_is_refused(
    pdp: httpx.AsyncClient, keys: Keys, sink: Sink
) -> None:
    # The cross-tenant attack: a PDP key of organisation B, valid at B's sidecar, at A's.
    key = "ks_authzen_org_b_pep_0123456789"
    org_b = authorizer_for(
        keys,
        Sink(),
        "org-b",
        [{"name": "pep", "key_hash": sha256(key), "scopes": ["decisions:evaluate"]}],
    )
    request_body = ask("alice", "read", "record-1")
    async with serving(org_b) as at_b:
        answered = await at_b.post(
            "/access/v1/evaluation",
            json=request_body,
            headers={"Authorization": f"Bearer {key}"},
        )
    assert answered.json()["decision"] is True  # the key works where it belongs
    refused = await pdp.post(
        "/access/v1/evaluation", json=request_body, headers={"Authorization": f"Bearer {key}"}
    )
    assert refused.status_code == 401
    assert "decision" not in refused.json()
    assert sink.records == []


async def test_an_api_key_subject_is_that_key_with_its_own_roles_and_scopes(
    pdp: httpx.AsyncClient, sink: Sink
) -> None:
    def about(key: str, verb: str, **properties: Any) -> dict[str, Any]:
        return {
            "subject": {"type": "apikey", "id": key, "properties": properties},
            "action": {"name": verb},
            "resource": {"type": "record", "id": "record-1"},
        }

    async def decided(body: dict[str, Any]) -> tuple[bool, list[str]]:
        answer = (await pdp.post("/access/v1/evaluation", json=body)).json()
        return answer["decision"], answer["context"]["reasons"]

    assert await decided(about("bot", "read")) == (True, [])
    # Its scopes narrow, as at the gateway; the caller's word does not widen them.
    scoped_out = await decided(about("bot", "write", scopes=["*:*"]))
    assert scoped_out[0] is False
    assert "do not include record:write" in scoped_out[1][0]
    assert sink.records[-1]["input"]["principal"]["attributes"]["scopes"] == ["record:read"]
    assert await decided(about("roleful", "write")) == (True, [])  # its role, no binding
    assert await decided(about("ghost", "read")) == (
        False,
        ["subject apikey:ghost: API key ghost is unknown, revoked or expired"],
    )
    assert await decided(about("gone", "read")) == (
        False,
        ["subject apikey:gone: API key gone has expired"],
    )
