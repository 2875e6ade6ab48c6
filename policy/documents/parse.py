"""Parse policy documents (RolePolicy, RegoPolicy, BudgetPolicy, PolicyTest) from text.

`apiVersion` may be omitted on any document (CONTRACTS.md shows it only on the first one
of a file); when present it must be `kaizen.studio/v1`. Each document keeps the raw
document it came from (its own text and node positions) so the control plane can store
and show it as written, and set-level errors can still point at a line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from policy.compile.rego_compile import check_modules
from policy.compile.rego_lint import RegoProblem
from policy.documents.fields import NAME, FieldReader, detail_at
from policy.documents.models import (
    ACTION,
    ACTION_HINT,
    API_VERSION,
    BUDGET_SCOPE,
    BUDGET_SCOPE_HINT,
    CASE_NAME,
    DEFAULT_BUDGET_ACTIONS,
    KINDS,
    METRICS,
    PERIODS,
    RESOURCE,
    RESOURCE_HINT,
    SUBJECT,
    SUBJECT_HINT,
    Binding,
    Budget,
    BudgetPolicy,
    BudgetUsage,
    Document,
    Expectation,
    Metric,
    Period,
    Permission,
    PolicyTest,
    PolicyTestCase,
    RegoPolicy,
    Role,
    RolePolicy,
)
from policy.documents.source import Path, RawDocument, dotted, load_documents
from policy.engine.decision_input import OUTCOMES, Outcome, input_problems
from policy.errors import ErrorDetail, PolicyValidationError

__all__ = [
    "API_VERSION",
    "KINDS",
    "Binding",
    "Budget",
    "BudgetPolicy",
    "BudgetUsage",
    "Document",
    "Expectation",
    "Permission",
    "PolicyTest",
    "PolicyTestCase",
    "RegoPolicy",
    "Role",
    "RolePolicy",
    "parse_policy_source",
    "rego_details",
]


def parse_policy_source(
    text: str, filename: str = "<source>", *, check_rego: bool = True
) -> list[Document]:
    """Every document in `text`; raises PolicyValidationError listing all problems found.

    `check_rego=False` leaves the Rego modules unchecked (`PolicySet.from_sources` checks
    a set's modules together, compiling them once)."""
    documents: list[Document] = []
    details: list[ErrorDetail] = []
    for raw in load_documents(text, filename):
        reader = FieldReader(raw)
        document = _parse_document(reader)
        valid = document is not None and not reader.details
        if valid and check_rego and isinstance(document, RegoPolicy):
            details.extend(
                rego_details(document, check_modules({document.module_path: document.rego}))
            )
        details.extend(reader.details)
        if document is not None:
            documents.append(document)
    if details:
        raise PolicyValidationError(details)
    return documents


def rego_details(document: RegoPolicy, problems: list[RegoProblem]) -> list[ErrorDetail]:
    """Rego problems as details; lines become lines of the YAML file for `rego: |` blocks."""
    path = ("spec", "rego")
    raw = document.source or RawDocument(file="<memory>", index=0, body=None, text="")
    block = raw.block_scalars.get(path)
    details = []
    for problem in problems:
        if problem.line is None or problem.column is None:
            details.append(detail_at(raw, path, problem.message))
        elif block is not None:
            details.append(
                ErrorDetail(
                    file=raw.file,
                    document=raw.index,
                    field=dotted(path),
                    line=block.first_line + problem.line - 1,
                    column=block.indent + problem.column,
                    message=problem.message,
                )
            )
        else:
            where = f" (line {problem.line}, column {problem.column} of the Rego text)"
            details.append(detail_at(raw, path, problem.message + where))
    return details


def _parse_document(reader: FieldReader) -> Document | None:
    body = reader.mapping(
        reader.raw.body, (), required=("kind", "metadata", "spec"), optional=("apiVersion",)
    )
    if body is None:
        return None
    if "apiVersion" in body and body["apiVersion"] != API_VERSION:
        reader.error(
            ("apiVersion",), f"unsupported apiVersion {body['apiVersion']!r}; use {API_VERSION}"
        )
    kind = body.get("kind")
    if "kind" in body and kind not in KINDS:
        reader.error(("kind",), f"unknown kind {kind!r} (expected one of: {', '.join(KINDS)})")
        return None
    if "metadata" not in body or "spec" not in body or kind is None:
        return None
    metadata = reader.mapping(
        body["metadata"], ("metadata",), required=("name",), optional=("description", "labels")
    )
    if metadata is None:
        return None
    name = reader.name(metadata.get("name"), ("metadata", "name"))
    description = _optional_string(reader, metadata, ("metadata", "description"))
    labels = _labels(reader, metadata)
    if name is None:
        return None
    common: dict[str, Any] = {
        "name": name,
        "description": description,
        "labels": labels,
        "source": reader.raw,
    }
    spec = body["spec"]
    if kind == "RolePolicy":
        return _role_policy(reader, spec, common)
    if kind == "RegoPolicy":
        return _rego_policy(reader, spec, common)
    if kind == "BudgetPolicy":
        return _budget_policy(reader, spec, common, name)
    return _policy_test(reader, spec, common)


def _optional_string(reader: FieldReader, parent: Mapping[str, object], path: Path) -> str | None:
    value = parent.get(str(path[-1]))
    return None if value is None else reader.string(value, path)


def _labels(reader: FieldReader, metadata: Mapping[str, object]) -> dict[str, str]:
    value = metadata.get("labels")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        reader.error(("metadata", "labels"), "labels must map strings to strings")
        return {}
    return cast(dict[str, str], value)


def _role_policy(reader: FieldReader, value: object, common: dict[str, Any]) -> RolePolicy | None:
    spec = reader.mapping(value, ("spec",), optional=("roles", "bindings"))
    if spec is None:
        return None
    roles = []
    for i, item in enumerate(reader.sequence(spec.get("roles", []), ("spec", "roles")) or []):
        role = _role(reader, item, ("spec", "roles", i))
        if role is not None:
            roles.append(role)
    bindings = []
    for i, item in enumerate(reader.sequence(spec.get("bindings", []), ("spec", "bindings")) or []):
        path = ("spec", "bindings", i)
        raw = reader.mapping(item, path, required=("subject", "role"), optional=("workspace",))
        if raw is None:
            continue
        subject = reader.string(
            raw.get("subject"), (*path, "subject"), pattern=SUBJECT, hint=SUBJECT_HINT
        )
        role_name = reader.name(raw.get("role"), (*path, "role"))
        workspace = None
        if raw.get("workspace") not in (None, "*"):
            workspace = reader.name(raw.get("workspace"), (*path, "workspace"))
        if subject and role_name:
            bindings.append(Binding(subject=subject, role=role_name, workspace=workspace))
    return RolePolicy(roles=tuple(roles), bindings=tuple(bindings), **common)


def _role(reader: FieldReader, value: object, path: Path) -> Role | None:
    raw = reader.mapping(
        value, path, required=("name",), optional=("permissions", "inherits", "description")
    )
    if raw is None:
        return None
    name = reader.name(raw.get("name"), (*path, "name"))
    inherits = reader.strings(
        raw.get("inherits", []), (*path, "inherits"), pattern=NAME, hint="a role name"
    )
    permissions = []
    perms_path = (*path, "permissions")
    for j, item in enumerate(reader.sequence(raw.get("permissions", []), perms_path) or []):
        ppath = (*perms_path, j)
        perm = reader.mapping(item, ppath, required=("resource", "actions"))
        if perm is None:
            continue
        resource = reader.string(
            perm.get("resource"), (*ppath, "resource"), pattern=RESOURCE, hint=RESOURCE_HINT
        )
        actions = reader.strings(
            perm.get("actions"), (*ppath, "actions"), pattern=ACTION, hint=ACTION_HINT
        )
        if isinstance(perm.get("actions"), list) and not perm["actions"]:
            reader.error((*ppath, "actions"), "a permission needs at least one action")
        if resource and actions:
            permissions.append(Permission(resource=resource, actions=actions))
    if name is None:
        return None
    return Role(
        name=name,
        permissions=tuple(permissions),
        inherits=inherits,
        description=_optional_string(reader, raw, (*path, "description")),
    )


def _rego_policy(reader: FieldReader, value: object, common: dict[str, Any]) -> RegoPolicy | None:
    spec = reader.mapping(value, ("spec",), required=("rego",), optional=("approvers",))
    if spec is None:
        return None
    rego = reader.string(spec.get("rego"), ("spec", "rego"))
    approvers = reader.strings(
        spec.get("approvers", []), ("spec", "approvers"), pattern=NAME, hint="a role name"
    )
    if rego is None:
        return None
    return RegoPolicy(rego=rego, approvers=tuple(sorted(set(approvers))), **common)


def _budget_policy(
    reader: FieldReader, value: object, common: dict[str, Any], document_name: str
) -> BudgetPolicy | None:
    spec = reader.mapping(value, ("spec",), required=("budgets",))
    if spec is None:
        return None
    budgets = []
    for i, item in enumerate(reader.sequence(spec.get("budgets"), ("spec", "budgets")) or []):
        path = ("spec", "budgets", i)
        raw = reader.mapping(
            item,
            path,
            required=("scope", "metric", "limit", "period"),
            optional=("name", "soft_limit", "actions"),
        )
        if raw is None:
            continue
        name = (
            reader.name(raw["name"], (*path, "name")) if "name" in raw else f"{document_name}[{i}]"
        )
        scope = reader.string(
            raw.get("scope"), (*path, "scope"), pattern=BUDGET_SCOPE, hint=BUDGET_SCOPE_HINT
        )
        metric = reader.choice(raw.get("metric"), (*path, "metric"), METRICS)
        period = reader.choice(raw.get("period"), (*path, "period"), PERIODS)
        limit = reader.number(raw.get("limit"), (*path, "limit"), minimum=0)
        soft = None
        if raw.get("soft_limit") is not None:
            soft = reader.number(raw["soft_limit"], (*path, "soft_limit"), minimum=0)
            if soft is not None and limit is not None and soft > limit:
                reader.error((*path, "soft_limit"), f"soft_limit {soft:g} is above limit {limit:g}")
                soft = None
        actions = DEFAULT_BUDGET_ACTIONS
        if "actions" in raw:
            actions = reader.strings(
                raw["actions"], (*path, "actions"), pattern=ACTION, hint=ACTION_HINT
            )
        if name and scope and metric and period and limit is not None:
            budgets.append(
                Budget(
                    name=name,
                    scope=scope,
                    metric=cast(Metric, metric),
                    period=cast(Period, period),
                    limit=limit,
                    soft_limit=soft,
                    actions=actions,
                )
            )
    return BudgetPolicy(budgets=tuple(budgets), **common)


def _policy_test(reader: FieldReader, value: object, common: dict[str, Any]) -> PolicyTest | None:
    spec = reader.mapping(value, ("spec",), required=("cases",))
    if spec is None:
        return None
    cases: list[PolicyTestCase] = []
    seen: set[str] = set()
    for i, item in enumerate(reader.sequence(spec.get("cases"), ("spec", "cases")) or []):
        path = ("spec", "cases", i)
        raw = reader.mapping(
            item, path, required=("name", "input", "expect"), optional=("budget_usage",)
        )
        if raw is None:
            continue
        name = reader.string(
            raw.get("name"), (*path, "name"), pattern=CASE_NAME, hint="1-200 characters"
        )
        if name is not None and name in seen:
            reader.error((*path, "name"), f"duplicate test case name {name!r}")
        seen.add(name or "")
        for problem_path, message in input_problems(raw.get("input")) if "input" in raw else []:
            reader.error((*path, "input", *problem_path), message)
        expect = _expectation(reader, raw.get("expect"), (*path, "expect"))
        usage = _budget_usage(reader, raw.get("budget_usage", []), (*path, "budget_usage"))
        case_input = raw.get("input")
        if name is not None and expect is not None and isinstance(case_input, dict):
            cases.append(
                PolicyTestCase(name=name, input=case_input, expect=expect, budget_usage=usage)
            )
    return PolicyTest(cases=tuple(cases), **common)


def _expectation(reader: FieldReader, value: object, path: Path) -> Expectation | None:
    raw = reader.mapping(value, path, required=("outcome",), optional=("reasons",))
    if raw is None:
        return None
    outcome = reader.choice(raw.get("outcome"), (*path, "outcome"), OUTCOMES)
    reasons = reader.strings(raw["reasons"], (*path, "reasons")) if "reasons" in raw else None
    return None if outcome is None else Expectation(cast(Outcome, outcome), reasons)


def _budget_usage(reader: FieldReader, value: object, path: Path) -> tuple[BudgetUsage, ...]:
    out = []
    for i, item in enumerate(reader.sequence(value, path) or []):
        ipath = (*path, i)
        raw = reader.mapping(item, ipath, required=("scope", "metric", "used"))
        if raw is None:
            continue
        scope = reader.string(
            raw.get("scope"), (*ipath, "scope"), pattern=BUDGET_SCOPE, hint=BUDGET_SCOPE_HINT
        )
        metric = reader.choice(raw.get("metric"), (*ipath, "metric"), METRICS)
        used = reader.number(raw.get("used"), (*ipath, "used"), minimum=0)
        if scope and metric and used is not None:
            out.append(BudgetUsage(scope, cast(Metric, metric), used))
    return tuple(out)
