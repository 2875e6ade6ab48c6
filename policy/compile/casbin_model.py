"""The Casbin form of RBAC (RBAC with domains), the reference the fast index must agree with.

Domain = workspace; a binding without a workspace, and every role-to-role link, lives in
domain `*`, which matches any workspace through keyMatch as the `g` domain matching
function (register it with `add_named_domain_matching_func("g", key_match)` when loading
the model elsewhere). Roles are `role:<name>` so they never collide with subjects.
Resources match with keyMatch: `agent:*` is a prefix, which is the only glob we accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import casbin
from casbin.util.builtin_operators import key_match

ALL_DOMAINS = "*"

CASBIN_MODEL = """\
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && keyMatch(r.dom, p.dom) && keyMatch(r.obj, p.obj) \
&& (r.act == p.act || p.act == "*")
"""


def role_subject(role: str) -> str:
    return f"role:{role}"


def casbin_policy_lines(
    roles: Mapping[str, Mapping[str, Any]], bindings: Iterable[Mapping[str, Any]]
) -> tuple[str, ...]:
    """Sorted `p, …` lines, then sorted `g, …` lines (CSV; validated names have no commas)."""
    p_lines = set()
    g_lines = set()
    for name, role in roles.items():
        for permission in role.get("permissions", []):
            for action in permission["actions"]:
                p_lines.add(
                    f"p, {role_subject(name)}, {ALL_DOMAINS}, {permission['resource']}, {action}"
                )
        for parent in role.get("inherits", []):
            g_lines.add(f"g, {role_subject(name)}, {role_subject(parent)}, {ALL_DOMAINS}")
    for binding in bindings:
        domain = binding.get("workspace") or ALL_DOMAINS
        g_lines.add(f"g, {binding['subject']}, {role_subject(binding['role'])}, {domain}")
    return (*sorted(p_lines), *sorted(g_lines))


def casbin_enforcer(policy_lines: Sequence[str]) -> casbin.Enforcer:
    enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=CASBIN_MODEL))
    enforcer.add_named_domain_matching_func("g", key_match)
    p_rules = [line.split(", ")[1:] for line in policy_lines if line.startswith("p, ")]
    g_rules = [line.split(", ")[1:] for line in policy_lines if line.startswith("g, ")]
    if p_rules:
        enforcer.add_policies(p_rules)
    if g_rules:
        enforcer.add_grouping_policies(g_rules)
    return enforcer


def casbin_allows(
    enforcer: casbin.Enforcer, subjects: Iterable[str], workspace: str, resource: str, action: str
) -> bool:
    """Casbin takes one subject per request; a principal is allowed if any subject is."""
    return any(enforcer.enforce(s, workspace, resource, action) for s in subjects)
