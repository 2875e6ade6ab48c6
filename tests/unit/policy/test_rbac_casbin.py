"""The fast RBAC index must agree with casbin.enforce on the compiled Casbin model."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.compile.casbin_model import casbin_allows, casbin_enforcer, casbin_policy_lines
from policy.engine.rbac import RbacIndex, principal_subjects

ROLES = ["r0", "r1", "r2", "r3", "r4"]
ACTIONS = ["invoke", "deploy", "read", "*"]
RESOURCES = ["agent:*", "agent:a", "agent:ab", "agent:a*", "pipeline:p", "*"]
WORKSPACES = ["prod", "dev"]
SUBJECTS = ["user:u1@example.com", "user:u2@example.com", "team:sre", "team:ml", "apikey:ci"]


@st.composite
def rbac_policies(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    roles: dict[str, Any] = {}
    for index, name in enumerate(ROLES):
        permissions = draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "resource": st.sampled_from(RESOURCES),
                        "actions": st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=2),
                    }
                ),
                max_size=3,
            )
        )
        # Inherit only from later roles: acyclic, as validation guarantees.
        inherits = (
            draw(st.lists(st.sampled_from(ROLES[index + 1 :]), max_size=2)) if index < 4 else []
        )
        roles[name] = {"permissions": permissions, "inherits": inherits}
    bindings = draw(
        st.lists(
            st.builds(
                lambda s, r, w: {"subject": s, "role": r, **({"workspace": w} if w else {})},
                st.sampled_from(SUBJECTS),
                st.sampled_from(ROLES),
                st.sampled_from([None, *WORKSPACES]),
            ),
            max_size=8,
        )
    )
    return roles, bindings


requests = st.tuples(
    st.sampled_from(["user:u1@example.com", "user:u2@example.com", "apikey:ci", "service:x"]),
    st.lists(st.sampled_from(["sre", "ml", "other"]), max_size=2),
    st.lists(st.sampled_from([*ROLES, "unknown"]), max_size=2),
    st.sampled_from(["invoke", "deploy", "read", "delete"]),
    st.sampled_from(["agent:a", "agent:ab", "agent:b", "agent:", "pipeline:p", "pipeline:q"]),
    st.sampled_from(["", "prod", "dev", "stage"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=rbac_policies(), request_batch=st.lists(requests, min_size=1, max_size=10))
def test_fast_index_agrees_with_casbin_enforce(
    policy: tuple[dict[str, Any], list[dict[str, Any]]],
    request_batch: list[tuple[str, list[str], list[str], str, str, str]],
) -> None:
    roles, bindings = policy
    index = RbacIndex(roles, bindings)
    enforcer = casbin_enforcer(casbin_policy_lines(roles, bindings))
    for principal, teams, direct_roles, action, resource, workspace in request_batch:
        subjects = principal_subjects(principal, principal.split(":")[0], teams)
        fast = index.check(subjects, direct_roles, action, resource, workspace)
        reference = casbin_allows(
            enforcer, index.casbin_subjects(subjects, direct_roles), workspace, resource, action
        )
        assert fast.allowed == reference, (
            principal,
            teams,
            direct_roles,
            action,
            resource,
            workspace,
        )
        if fast.allowed:
            assert fast.grant is not None
            assert fast.grant.action in (action, "*")
