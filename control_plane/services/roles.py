"""Organisation roles as data: `builtin_roles.yaml`, a RolePolicy document.

The control plane's own API is authorized from this table, never from scattered `if`s;
the policy engine (policy/) takes the same document over as the built-in RolePolicy.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import yaml

BUILTIN_ROLES_PATH = Path(__file__).with_name("builtin_roles.yaml")

Permission = tuple[str, str]  # (resource glob, action)


@cache
def builtin_role_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(BUILTIN_ROLES_PATH.read_text())
    return document


@cache
def role_permissions() -> dict[str, frozenset[Permission]]:
    """Every role mapped to its permissions, inherited ones included."""
    roles = {r["name"]: r for r in builtin_role_document()["spec"]["roles"]}

    def closure(name: str, seen: tuple[str, ...] = ()) -> set[Permission]:
        if name in seen:
            raise ValueError(f"role inheritance cycle through {name}")
        role = roles[name]
        granted = {
            (p["resource"], action) for p in role.get("permissions", []) for action in p["actions"]
        }
        for parent in role.get("inherits", []):
            granted |= closure(parent, (*seen, name))
        return granted

    return {name: frozenset(closure(name)) for name in roles}


ROLES: tuple[str, ...] = (
    "owner",
    "admin",
    "security_admin",
    "developer",
    "operator",
    "auditor",
    "viewer",
)


def grants(permissions: Iterable[Permission], collection: str, action: str) -> bool:
    resource = f"{collection}:*"
    return any(
        fnmatchcase(resource, pattern) and (granted == action or granted == "*")
        for pattern, granted in permissions
    )


def role_allows(role: str, collection: str, action: str) -> bool:
    return grants(role_permissions().get(role, frozenset()), collection, action)


def role_within(role: str, ceiling: str) -> bool:
    """True when every permission of `role` is also one of `ceiling`'s."""
    table = role_permissions()
    return table[role] <= table[ceiling]


def scope_allows(scopes: Iterable[str], collection: str, action: str) -> bool:
    """API-key scopes are `collection:action` strings; `*` matches either part."""
    return any(
        fnmatchcase(collection, scope.partition(":")[0])
        and fnmatchcase(action, scope.partition(":")[2] or "*")
        for scope in scopes
    )
