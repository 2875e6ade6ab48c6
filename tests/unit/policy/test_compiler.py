from __future__ import annotations

import hashlib
import json

import pytest

from policy.compile.casbin_model import casbin_enforcer
from policy.compile.compiler import CompileContext, CompiledPolicy, CompileError, compile_policy
from policy.documents.parse import parse_policy_source
from policy.documents.policy_set import PolicySet

from .conftest import EXAMPLE, ORG


def compile_text(source: str, context: CompileContext | None = None) -> CompiledPolicy:
    policy_set = PolicySet.from_sources([("p.yaml", source)], builtin_roles=False)
    return compile_policy(policy_set, context or CompileContext(ORG))


def test_same_input_gives_byte_identical_output_whatever_the_document_order() -> None:
    documents = parse_policy_source(EXAMPLE)
    context = CompileContext(
        ORG,
        api_keys=[{"name": "ci", "key_hash": "a" * 64, "roles": ["agent-user", "agent-user"]}],
        jwks={"keys": [{"kid": "b", "kty": "OKP"}, {"kid": "a", "kty": "OKP"}]},
        agents={"support-bot": {"model": "x", "tools": ["search"]}},
    )
    first = compile_policy(PolicySet.from_documents(documents), context)
    second = compile_policy(PolicySet.from_documents(list(reversed(documents))), context)
    assert first.data_json() == second.data_json()
    assert first.casbin_policy_text() == second.casbin_policy_text()
    assert first.casbin_model == second.casbin_model
    assert list(first.rego_modules.items()) == list(second.rego_modules.items())
    assert (
        first.data_json()
        == compile_policy(PolicySet.from_documents(documents), context).data_json()
    )


def test_casbin_lines_for_the_example() -> None:
    compiled = compile_text(EXAMPLE)
    assert compiled.casbin_policy == (
        "p, role:agent-admin, *, agent:*, create",
        "p, role:agent-admin, *, agent:*, delete",
        "p, role:agent-admin, *, agent:*, deploy",
        "p, role:agent-admin, *, agent:*, update",
        "p, role:agent-user, *, agent:*, invoke",
        "g, apikey:ci-bot, role:agent-user, *",
        "g, role:agent-admin, role:agent-user, *",
        "g, team:sre, role:agent-admin, prod",
        "g, user:alice@example.com, role:agent-user, *",
    )
    enforcer = casbin_enforcer(compiled.casbin_policy)
    assert enforcer.enforce("team:sre", "prod", "agent:x", "invoke")
    assert not enforcer.enforce("team:sre", "dev", "agent:x", "invoke")


def test_data_json_carries_roles_bindings_budgets_keys_and_metadata() -> None:
    key_hash = hashlib.sha256(b"ks_secret").hexdigest()
    compiled = compile_text(
        EXAMPLE,
        CompileContext(
            ORG,
            api_keys=[{"name": "ci-bot", "key_hash": key_hash}],
            jwks={"keys": [{"kid": "k"}]},
            pipelines={"etl": {"pattern": "sequential"}},
        ),
    )
    kaizen = json.loads(compiled.data_json())["kaizen"]
    assert kaizen["organization"] == ORG
    assert kaizen["roles"]["agent-admin"] == {
        "inherits": ["agent-user"],
        "permissions": [
            {"resource": "agent:*", "actions": ["create", "delete", "deploy", "update"]}
        ],
    }
    assert {"subject": "team:sre", "role": "agent-admin", "workspace": "prod"} in kaizen["bindings"]
    assert {"subject": "user:alice@example.com", "role": "agent-user"} in kaizen["bindings"]
    assert kaizen["budgets"][0]["scope"] == "team:research"
    assert kaizen["api_keys"] == {key_hash: {"name": "ci-bot", "roles": []}}
    assert kaizen["jwks"] == {"keys": [{"kid": "k"}]}
    assert kaizen["pipelines"] == {"etl": {"pattern": "sequential"}}
    assert "abac" not in kaizen  # data.kaizen.abac belongs to the Rego packages
    assert compiled.rego_modules.keys() == {"kaizen/abac/guardrails/policy.rego"}


def test_compiled_policy_rebuilds_from_bundle_parts() -> None:
    compiled = compile_text(EXAMPLE)
    again = CompiledPolicy.from_bundle_parts(
        json.loads(compiled.data_json()), dict(compiled.rego_modules)
    )
    assert again == compiled


@pytest.mark.parametrize(
    ("api_keys", "message"),
    [
        ([{"name": "a", "key_hash": "xyz"}], "64 lowercase hex"),
        ([{"key_hash": "a" * 64}], "without a name"),
        ([{"name": "a", "key_hash": "a" * 64}, {"name": "a", "key_hash": "b" * 64}], "duplicate"),
        ([{"name": "a", "key_hash": "a" * 64, "roles": "admin"}], "list of strings"),
        ([{"name": "a", "key_hash": "a" * 64, "scopes": "agents:*"}], "scopes must be a list"),
        ([{"name": "a", "key_hash": "a" * 64, "expires_at": "soon"}], "Unix seconds"),
    ],
)
def test_bad_api_keys_are_compile_errors(api_keys: list[dict[str, object]], message: str) -> None:
    with pytest.raises(CompileError, match=message):
        compile_text(EXAMPLE, CompileContext(ORG, api_keys=api_keys))


def test_key_scopes_expiry_and_revoked_sessions_travel_in_the_bundle() -> None:
    context = CompileContext(
        ORG,
        api_keys=[
            {"name": "ci", "key_hash": "a" * 64, "scopes": ["b:x", "a:y"], "expires_at": 1800000000}
        ],
        revoked_sessions=["s2", "s1", "s2"],
    )
    kaizen = compile_text(EXAMPLE, context).kaizen
    assert kaizen["api_keys"]["a" * 64] == {
        "name": "ci",
        "roles": [],
        "scopes": ["a:y", "b:x"],
        "expires_at": 1800000000,
    }
    assert kaizen["revoked_sessions"] == ["s1", "s2"]
    assert "revoked_sessions" not in compile_text(EXAMPLE, CompileContext(ORG)).kaizen


def test_non_json_context_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="agents is not JSON"):
        compile_text(EXAMPLE, CompileContext(ORG, agents={"a": {"x": object()}}))
    with pytest.raises(CompileError, match="organization_id"):
        compile_text(EXAMPLE, CompileContext(""))


APPROVED = """\
kind: RegoPolicy
metadata: {name: prod}
spec:
  approvers: [security_admin, operator, operator]
  rego: |
    package kaizen.abac.prod
    import rego.v1
    require_approval contains "prod needs approval" if input.action == "deploy"
"""


def test_named_approvers_are_structured_data_of_the_bundle() -> None:
    compiled = compile_text(APPROVED)
    assert compiled.kaizen["approvals"] == {"kaizen.abac.prod": ["operator", "security_admin"]}
    without = compile_text(
        APPROVED.replace("  approvers: [security_admin, operator, operator]\n", "")
    )
    assert "approvals" not in without.kaizen  # bundles without approvers keep their bytes
