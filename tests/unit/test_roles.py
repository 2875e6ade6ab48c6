"""The organisation role table behaves as the README promises."""

import pytest

from control_plane.services import roles


@pytest.mark.parametrize(
    ("role", "collection", "action", "allowed"),
    [
        ("viewer", "api_keys", "create", False),
        ("viewer", "teams", "read", True),
        ("viewer", "audit_events", "read", False),
        ("auditor", "audit_events", "read", True),
        ("auditor", "audit_events", "verify", True),
        ("auditor", "users", "create", False),
        ("developer", "api_keys", "create", True),
        ("developer", "users", "create", False),
        ("operator", "gateways", "create", True),
        ("security_admin", "policies", "publish", True),
        ("security_admin", "users", "create", False),
        ("admin", "users", "create", True),
        ("admin", "users", "grant_owner", False),
        ("owner", "users", "grant_owner", True),
        ("owner", "organization", "delete", True),
        ("nonexistent", "teams", "read", False),
    ],
)
def test_role_table(role: str, collection: str, action: str, allowed: bool) -> None:
    assert roles.role_allows(role, collection, action) is allowed


def test_every_role_is_within_owner_and_viewer_within_every_role() -> None:
    for role in roles.ROLES:
        assert roles.role_within(role, "owner")
        assert roles.role_within("viewer", role)
    assert not roles.role_within("admin", "security_admin")


def test_scopes_narrow_by_collection_and_action() -> None:
    assert roles.scope_allows(["agents:read"], "agents", "read")
    assert not roles.scope_allows(["agents:read"], "agents", "create")
    assert roles.scope_allows(["agents:*"], "agents", "create")
    assert roles.scope_allows(["*:read"], "teams", "read")
    assert not roles.scope_allows([], "teams", "read")
