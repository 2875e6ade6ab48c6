"""The OpenAPI document names things once and readably (M15 item 5, M10 "one name per
thing"): every operation id is `<tag>.<action>` and unique, none is FastAPI's default
(`login_api_v1_auth_login_post`), and no schema name is a module-qualified duplicate
(`control_plane__schemas__decisions__ChainVerification`)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from control_plane.api.operation_ids import action
from control_plane.app import create_app

STABLE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app().openapi()


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (method.upper(), path): operation["operationId"]
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }


def test_operation_ids_are_stable_readable_and_unique(spec: dict[str, Any]) -> None:
    ids = _operations(spec)
    assert [i for i in ids.values() if not STABLE.match(i)] == []
    assert [
        i for i in ids.values() if "api_v1" in i or re.search(r"_(get|post|put|patch|delete)$", i)
    ] == []
    assert [i for i, n in Counter(ids.values()).items() if n > 1] == []


def test_the_ids_clients_are_written_against(spec: dict[str, Any]) -> None:
    ids = _operations(spec)
    assert ids["POST", "/api/v1/auth/login"] == "auth.login"
    assert ids["POST", "/api/v1/policies/publish"] == "policies.publish"
    assert ids["POST", "/api/v1/policies/simulate"] == "policies.simulate"
    assert ids["GET", "/api/v1/decisions"] == "decisions.list"
    assert ids["GET", "/api/v1/decisions/export"] == "decisions.export"
    assert ids["POST", "/api/v1/approvals/{approval_id}/approve"] == "approvals.approve"
    assert ids["POST", "/api/v1/api-keys"] == "api_keys.create"
    assert ids["GET", "/api/v1/agents/{agent_id}/versions"] == "agents.list_versions"


def test_no_schema_name_is_a_module_qualified_duplicate(spec: dict[str, Any]) -> None:
    names = list(spec["components"]["schemas"])
    assert [n for n in names if "__" in n] == []
    assert {"AuditChainVerification", "DecisionChainVerification"} <= set(names)


@pytest.mark.parametrize(
    ("tag", "name", "expected"),
    [
        ("gateways", "create_gateway", "create"),
        ("gateways", "list_gateways", "list"),
        ("policies", "get_policy", "get"),
        ("api-keys", "revoke_api_key", "revoke"),
        ("agents", "list_agent_versions", "list_versions"),
        ("replays", "replay_set", "replay_set"),  # the noun is the verb: kept
        ("policies", "publish", "publish"),
    ],
)
def test_the_action_drops_the_tags_noun_but_never_the_verb(
    tag: str, name: str, expected: str
) -> None:
    assert action(tag, name) == expected
