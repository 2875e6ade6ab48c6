"""The policy document types and the vocabulary their fields are checked against."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from policy.compile.rego_compile import module_path, read_package
from policy.documents.source import RawDocument
from policy.engine.decision_input import Outcome

API_VERSION = "kaizen.studio/v1"
KINDS = ("RolePolicy", "RegoPolicy", "BudgetPolicy", "PolicyTest")
Metric = Literal["cost_usd", "executions", "tokens"]
Period = Literal["hour", "day", "week", "month"]
METRICS: tuple[Metric, ...] = ("cost_usd", "executions", "tokens")
PERIODS: tuple[Period, ...] = ("hour", "day", "week", "month")
DEFAULT_BUDGET_ACTIONS: tuple[str, ...] = ("invoke", "run")

_NAME_CHARS = r"[^\s,\"'*]"
SUBJECT = re.compile(rf"(user|team|apikey|service):{_NAME_CHARS}+")
SUBJECT_HINT = "a subject is user:<email>, team:<name>, apikey:<name> or service:<name>"
RESOURCE = re.compile(rf"\*|[a-z][a-z0-9_-]*:(?:{_NAME_CHARS}+\*?|\*)")
RESOURCE_HINT = "a resource is <type>:<name>, '*' allowed only at the end (agent:*, agent:ci-*)"
ACTION = re.compile(r"\*|[a-z][a-z0-9_.-]{0,63}")
ACTION_HINT = "an action is a lowercase word such as invoke, or '*'"
BUDGET_SCOPE = re.compile(rf"org|(user|team|apikey|service|agent|pipeline):{_NAME_CHARS}+")
BUDGET_SCOPE_HINT = "org, or user:/team:/apikey:/service:/agent:/pipeline:<name>"
CASE_NAME = re.compile(r"\S(?:.{0,198}\S)?")


@dataclass(frozen=True)
class Permission:
    resource: str
    actions: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "actions": list(self.actions)}


@dataclass(frozen=True)
class Role:
    name: str
    permissions: tuple[Permission, ...] = ()
    inherits: tuple[str, ...] = ()
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        if self.inherits:
            out["inherits"] = list(self.inherits)
        out["permissions"] = [p.to_dict() for p in self.permissions]
        return out


@dataclass(frozen=True)
class Binding:
    subject: str
    role: str
    workspace: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject, "role": self.role}
        if self.workspace is not None:
            out["workspace"] = self.workspace
        return out


@dataclass(frozen=True)
class Budget:
    name: str
    scope: str
    metric: Metric
    period: Period
    limit: float
    soft_limit: float | None = None
    actions: tuple[str, ...] = DEFAULT_BUDGET_ACTIONS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "scope": self.scope,
            "metric": self.metric,
            "period": self.period,
            "limit": self.limit,
        }
        if self.soft_limit is not None:
            out["soft_limit"] = self.soft_limit
        out["actions"] = list(self.actions)
        return out


@dataclass(frozen=True)
class Expectation:
    outcome: Outcome
    reasons: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BudgetUsage:
    """Usage a policy test starts from, so budget limits can be tested."""

    scope: str
    metric: Metric
    used: float


@dataclass(frozen=True)
class PolicyTestCase:
    name: str
    input: Mapping[str, Any]
    expect: Expectation
    budget_usage: tuple[BudgetUsage, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        expect: dict[str, Any] = {"outcome": self.expect.outcome}
        if self.expect.reasons is not None:
            expect["reasons"] = list(self.expect.reasons)
        out: dict[str, Any] = {"name": self.name, "input": dict(self.input), "expect": expect}
        if self.budget_usage:
            out["budget_usage"] = [
                {"scope": u.scope, "metric": u.metric, "used": u.used} for u in self.budget_usage
            ]
        return out


@dataclass(frozen=True, kw_only=True)
class _Document:
    kind: ClassVar[str]
    name: str
    description: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    source: RawDocument | None = field(default=None, compare=False, repr=False)

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            metadata["description"] = self.description
        if self.labels:
            metadata["labels"] = dict(self.labels)
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": metadata,
            "spec": self.spec(),
        }

    @property
    def text(self) -> str | None:
        """The document as it was written, when it was parsed from text."""
        return self.source.text if self.source else None


@dataclass(frozen=True, kw_only=True)
class RolePolicy(_Document):
    kind: ClassVar[str] = "RolePolicy"
    roles: tuple[Role, ...] = ()
    bindings: tuple[Binding, ...] = ()

    def spec(self) -> dict[str, Any]:
        return {
            "roles": [r.to_dict() for r in self.roles],
            "bindings": [b.to_dict() for b in self.bindings],
        }


@dataclass(frozen=True, kw_only=True)
class RegoPolicy(_Document):
    kind: ClassVar[str] = "RegoPolicy"
    rego: str
    # Roles that may approve what this package's `require_approval` holds (empty: any role
    # that may decide approvals). Structured and signed in the bundle, never parsed from text.
    approvers: tuple[str, ...] = ()

    @property
    def package(self) -> str | None:
        return read_package(self.rego)

    @property
    def module_path(self) -> str:
        return module_path(self.name)

    def spec(self) -> dict[str, Any]:
        if self.approvers:
            return {"rego": self.rego, "approvers": list(self.approvers)}
        return {"rego": self.rego}


@dataclass(frozen=True, kw_only=True)
class BudgetPolicy(_Document):
    kind: ClassVar[str] = "BudgetPolicy"
    budgets: tuple[Budget, ...] = ()

    def spec(self) -> dict[str, Any]:
        return {"budgets": [b.to_dict() for b in self.budgets]}


@dataclass(frozen=True, kw_only=True)
class PolicyTest(_Document):
    kind: ClassVar[str] = "PolicyTest"
    cases: tuple[PolicyTestCase, ...] = ()

    def spec(self) -> dict[str, Any]:
        return {"cases": [c.to_dict() for c in self.cases]}


Document = RolePolicy | RegoPolicy | BudgetPolicy | PolicyTest
