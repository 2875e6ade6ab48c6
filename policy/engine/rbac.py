"""RBAC fast path: role closures and per-role permission tables precomputed at load time.

Semantics are exactly the Casbin model in casbin_model.py (a property test checks them
against `casbin.Enforcer.enforce`); a check is a few dict lookups instead of a matcher
evaluated over every policy line, which is what makes the 50 µs decision budget possible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policy.compile.casbin_model import role_subject


@dataclass(frozen=True, slots=True)
class Grant:
    role: str  # the role whose permission matched (may be inherited)
    resource: str
    action: str

    @property
    def rule(self) -> str:
        return f"rbac:{self.role}:{self.action}:{self.resource}"


@dataclass(frozen=True, slots=True)
class RbacResult:
    allowed: bool
    grant: Grant | None
    held_role: str | None  # the role the principal holds that led to the grant
    reason: str | None


class _ResourceGrants:
    __slots__ = ("anything", "exact", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, Grant] = {}
        self.prefixes: list[tuple[str, Grant]] = []
        self.anything: Grant | None = None

    def add(self, grant: Grant) -> None:
        if grant.resource == "*":
            self.anything = self.anything or grant
        elif grant.resource.endswith("*"):
            self.prefixes.append((grant.resource[:-1], grant))
        else:
            self.exact.setdefault(grant.resource, grant)

    def freeze(self) -> None:
        # Longest prefix first so the reported rule is the most specific one.
        self.prefixes.sort(key=lambda item: (-len(item[0]), item[1].role))

    def match(self, resource: str) -> Grant | None:
        found = self.exact.get(resource)
        if found is not None:
            return found
        for prefix, grant in self.prefixes:
            if resource.startswith(prefix):
                return grant
        return self.anything


def principal_subjects(
    principal_id: str, principal_type: str | None, teams: Iterable[str]
) -> list[str]:
    """The binding subjects a principal speaks for: itself and each of its teams."""
    subjects = [principal_id]
    if principal_type == "apikey" and not principal_id.startswith("apikey:"):
        subjects.append(f"apikey:{principal_id}")
    subjects.extend(f"team:{team}" for team in teams)
    return subjects


class RbacIndex:
    def __init__(
        self, roles: Mapping[str, Mapping[str, Any]], bindings: Iterable[Mapping[str, Any]]
    ) -> None:
        self._closure = {name: self._ancestors(name, roles) for name in roles}
        self._grants: dict[str, dict[str, _ResourceGrants]] = {}
        for name, ancestors in self._closure.items():
            table: dict[str, _ResourceGrants] = {}
            for ancestor in sorted(ancestors):
                for permission in roles[ancestor].get("permissions", []):
                    for action in permission["actions"]:
                        grant = Grant(ancestor, permission["resource"], action)
                        table.setdefault(action, _ResourceGrants()).add(grant)
            for grants in table.values():
                grants.freeze()
            self._grants[name] = table
        by_subject: dict[str, list[tuple[str, str | None]]] = {}
        for binding in bindings:
            entry = (binding["role"], binding.get("workspace") or None)
            by_subject.setdefault(binding["subject"], []).append(entry)
        self._bindings = {
            subject: tuple(sorted(set(v), key=str)) for subject, v in by_subject.items()
        }

    @staticmethod
    def _ancestors(name: str, roles: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
        seen = {name}
        stack = [name]
        while stack:
            for parent in roles.get(stack.pop(), {}).get("inherits", []):
                if parent in roles and parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return frozenset(seen)

    def held_roles(
        self, subjects: Sequence[str], direct_roles: Iterable[str], workspace: str
    ) -> list[str]:
        held = {role for role in direct_roles if role in self._grants}
        for subject in subjects:
            for role, bound_workspace in self._bindings.get(subject, ()):
                if bound_workspace is None or bound_workspace == workspace:
                    held.add(role)
        return sorted(held)

    def check(
        self,
        subjects: Sequence[str],
        direct_roles: Iterable[str],
        action: str,
        resource: str,
        workspace: str,
    ) -> RbacResult:
        for role in self.held_roles(subjects, direct_roles, workspace):
            table = self._grants.get(role)
            if table is None:
                continue
            for key in (action, "*"):
                grants = table.get(key)
                grant = grants.match(resource) if grants is not None else None
                if grant is not None:
                    return RbacResult(True, grant, role, None)
        where = f" in workspace {workspace}" if workspace else ""
        return RbacResult(False, None, None, f"no role grants {action} on {resource}{where}")

    def casbin_subjects(self, subjects: Sequence[str], direct_roles: Iterable[str]) -> list[str]:
        """The same principal as Casbin sees it: its subjects plus `role:<r>` per direct role."""
        return [*subjects, *(role_subject(role) for role in direct_roles)]
