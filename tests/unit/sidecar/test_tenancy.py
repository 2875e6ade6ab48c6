"""A shared platform gateway's sidecar (ADR 0012): two organisations on one Authorizer,
each call decided under the organisation of the caller's verified credential.

Real signed bundles (one key per organisation), the real engine and budgets. Every
attack is performed: naming the other organisation in the path or a header, a token
claiming the other organisation, spending the other's budget with a same-named key, a
secret shared by both, and a bundle for one organisation signed with the other's key.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from authz_sidecar.authorizer import SHARED_AUTHZEN, Authorizer
from authz_sidecar.authzen import evaluation as authzen_evaluation
from authz_sidecar.budgets import InMemoryReservationBook
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.mapping import HttpFacts
from authz_sidecar.tenancy import NO_TENANT, Tenants, namespace_of, strip_namespace
from authz_sidecar.tenant_logs import TenantLogs, ingest_path
from policy.bundles.bundle import build_bundle, load_bundle
from policy.bundles.bundle_store import BundleStore
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from policy.engine.budgets import InMemoryBudgetLedger
from policy.errors import BundleVerificationError
from tests.unit.sidecar.factory import AUDIENCE, ISSUER, Keys, access_token, make_keys

A, B = str(uuid.uuid4()), str(uuid.uuid4())
KEY_A, KEY_B = "ks_alpha_0123456789abcdef", "ks_beta_0123456789abcdef"
SHARED_SECRET = "ks_both_0123456789abcdef"  # (impossible in practice) in both bundles


def policy(agent: str) -> str:
    """Each organisation's own policy: its ci-bot may invoke only its own agent, 2 a day."""
    return f"""\
kind: RolePolicy
metadata: {{name: roles}}
spec:
  roles:
    - name: agent-user
      permissions: [{{resource: "agent:{agent}", actions: [invoke]}}]
  bindings:
    - {{subject: "apikey:ci-bot", role: agent-user}}
    - {{subject: "user:alice@example.com", role: agent-user}}
---
kind: BudgetPolicy
metadata: {{name: spend}}
spec:
  budgets:
    - {{name: ci-daily, scope: "apikey:ci-bot", metric: executions, limit: 2, period: day}}
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundle(
    keys: Keys, organization: str, key: str, agent: str, *, scope: str | None = None
) -> bytes:
    compiled = compile_policy(
        PolicySet.from_sources([("policy.yaml", policy(agent))]),
        CompileContext(
            organization_id=organization,
            api_keys=[
                {"name": "ci-bot", "key_hash": sha(key), "roles": []},
                {"name": "twin", "key_hash": sha(SHARED_SECRET), "roles": []},
            ],
            jwks=keys.jwks,
        ),
    )
    return build_bundle(
        compiled, revision=1, signing_key=keys.private, kid=keys.kid, scope=scope or organization
    )


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def keys() -> dict[str, Keys]:
    return {A: make_keys("key-a"), B: make_keys("key-b")}


@pytest.fixture
def tenants(keys: dict[str, Keys]) -> Tenants:
    ledger = InMemoryBudgetLedger()
    tenants = Tenants(lambda: EngineHolder(ledger, issuer=ISSUER, audience=AUDIENCE), ledger)
    for organization, key, agent in ((A, KEY_A, "alpha-bot"), (B, KEY_B, "beta-bot")):
        verified = load_bundle(
            bundle(keys[organization], organization, key, agent),
            keys[organization].jwks,
            scope=organization,
        )
        tenants.on_bundle(organization)(verified)
    return tenants


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def authorizer(tenants: Tenants, sink: Sink) -> Authorizer:
    return Authorizer(
        tenants,
        replay_guard=InMemoryReplayGuard(),
        reservations=InMemoryReservationBook(),
        decision_key=b"k" * 32,
        sink=sink,
    )


def call(path: str, credential: str, **headers: str) -> HttpFacts:
    return HttpFacts("POST", path, {"authorization": f"Bearer {credential}", **headers})


async def test_each_call_is_decided_under_its_credentials_organisation(
    authorizer: Authorizer,
) -> None:
    mine = await authorizer.check(call(f"/o/{A}/v1/agents/alpha-bot/invoke", KEY_A))
    assert (mine.outcome, mine.organization, mine.principal) == ("allow", A, "apikey:ci-bot")
    # Without the namespace the credential's organisation still decides.
    plain = await authorizer.check(call("/v1/agents/beta-bot/invoke", KEY_B))
    assert (plain.outcome, plain.organization) == ("allow", B)
    # B's agent under A's own policy: A's policy grants only alpha-bot.
    other_agent = await authorizer.check(call(f"/o/{A}/v1/agents/beta-bot/invoke", KEY_A))
    assert (other_agent.status, other_agent.organization) == (403, A)


async def test_naming_the_other_organisation_in_the_path_or_a_header_is_a_deny_logged_as_mine(
    authorizer: Authorizer, sink: Sink
) -> None:
    in_path = await authorizer.check(call(f"/o/{B}/v1/agents/beta-bot/invoke", KEY_A))
    assert (in_path.status, in_path.outcome, in_path.organization) == (403, "deny", A)
    assert any("the path names organisation" in r for r in in_path.reasons), in_path.reasons
    header = await authorizer.check(
        call("/v1/agents/alpha-bot/invoke", KEY_A, **{"x-kaizen-organization": B})
    )
    assert (header.status, header.organization) == (403, A)
    assert any("X-Kaizen-Organization" in r for r in header.reasons), header.reasons
    # Both refusals are A's records: A's auditors see the attempt, B's see nothing.
    owners = [r["input"]["principal"]["organization"] for r in sink.records]
    assert owners == [A, A]


async def test_a_token_claiming_the_other_organisation_is_verified_with_its_keys_and_fails(
    authorizer: Authorizer, keys: dict[str, Keys]
) -> None:
    forged = access_token(keys[A], org=B)  # signed with A's key, naming B
    refused = await authorizer.check(call(f"/o/{B}/v1/agents/beta-bot/invoke", forged))
    assert refused.status == 401, refused.reasons
    assert "key this bundle does not know" in refused.reasons[0]
    genuine = await authorizer.check(
        call(f"/o/{A}/v1/agents/alpha-bot/invoke", access_token(keys[A], org=A))
    )
    assert (genuine.outcome, genuine.organization) == ("allow", A)


async def test_unknown_or_ambiguous_credentials_name_no_organisation(
    authorizer: Authorizer,
) -> None:
    for credential in ("ks_nobody_0123456789abcdef", SHARED_SECRET, "not-a-jwt"):
        verdict = await authorizer.check(call(f"/o/{A}/v1/agents/alpha-bot/invoke", credential))
        assert verdict.status == 401, (credential, verdict.reasons)
        assert NO_TENANT in verdict.reasons[0]


async def test_one_organisations_calls_never_spend_the_others_budget(
    authorizer: Authorizer,
) -> None:
    # Both organisations have an `apikey:ci-bot` with a budget named ci-daily of 2.
    spent = [await authorizer.check(call("/v1/agents/alpha-bot/invoke", KEY_A)) for _ in range(3)]
    assert [v.outcome for v in spent] == ["allow", "allow", "deny"]
    assert any("ci-daily" in r for r in spent[-1].reasons)
    theirs = [await authorizer.check(call("/v1/agents/beta-bot/invoke", KEY_B)) for _ in range(2)]
    assert [v.outcome for v in theirs] == ["allow", "allow"]


async def test_a_decision_is_settled_under_its_own_organisation(authorizer: Authorizer) -> None:
    allowed = await authorizer.check(call("/v1/agents/alpha-bot/invoke", KEY_A))
    assert await authorizer.settle(allowed.decision_id, {"executions": 1}) == 1
    assert await authorizer.settle(allowed.decision_id, {"executions": 1}) == 0


async def test_authzen_is_not_offered_on_a_shared_gateway(authorizer: Authorizer) -> None:
    evaluation = authzen_evaluation(
        {
            "subject": {"type": "apikey", "id": "ci-bot"},
            "action": {"name": "invoke"},
            "resource": {"type": "agent", "id": "alpha-bot"},
        }
    )
    verdict = await authorizer.evaluate(evaluation, caller="gateway", path="/x", source_ip=None)
    assert (verdict.outcome, verdict.reasons) == ("deny", (SHARED_AUTHZEN,))


async def test_a_dropped_organisation_is_no_longer_served(
    authorizer: Authorizer, tenants: Tenants
) -> None:
    tenants.drop(B)
    verdict = await authorizer.check(call("/v1/agents/beta-bot/invoke", KEY_B))
    assert verdict.status == 401
    assert authorizer.serving() == f"{A}:1"


def test_a_bundle_for_one_organisation_signed_with_the_others_key_is_refused(
    tmp_path: Path, keys: dict[str, Keys], tenants: Tenants
) -> None:
    store = BundleStore(tmp_path / B, scope=B)
    store.trust(keys[B].jwks)  # B's own keys, as fetched for B's scope
    with pytest.raises(BundleVerificationError):
        store.verify(bundle(keys[A], B, KEY_A, "beta-bot"))  # claims B, signed by A
    with pytest.raises(BundleVerificationError):
        store.verify(bundle(keys[B], A, KEY_A, "alpha-bot"))  # B's key, A's scope
    assert store.verify(bundle(keys[B], B, KEY_B, "beta-bot")).scope == B
    # And the engine map never files one organisation's verified bundle under another.
    a_bundle = load_bundle(bundle(keys[A], A, KEY_A, "alpha-bot"), keys[A].jwks, scope=A)
    with pytest.raises(ValueError, match="refused"):
        tenants.on_bundle(B)(a_bundle)


def test_the_namespace_is_the_first_path_segment_pair_only() -> None:
    assert namespace_of(f"/o/{A}/v1/agents/x/invoke") == A
    assert namespace_of("/v1/agents/o/invoke") is None
    facts = strip_namespace(HttpFacts("POST", f"/o/{A}/mcp?session=1", {}))
    assert facts.path == "/mcp?session=1"


async def test_decision_logs_are_kept_per_organisation(tmp_path: Path) -> None:
    logs = TenantLogs(tmp_path)
    await logs.append({"decision_id": "1", "input": {"principal": {"organization": A}}})
    await logs.append({"decision_id": "2", "input": {"principal": {"organization": B}}})
    await logs.append({"decision_id": "3", "input": {}})  # never authenticated: no owner
    assert {o: b.backlog for o, b in logs.buffers.items()} == {A: 1, B: 1}
    assert logs.unattributed == 1
    assert ingest_path(A) == f"/api/v1/platform/organizations/{A}/decisions/ingest"
    with pytest.raises(ValueError, match="not a directory name"):
        logs.buffer("../elsewhere")
    await logs.close()
