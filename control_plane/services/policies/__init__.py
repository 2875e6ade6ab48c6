"""Tenant policies: drafts by name with versions, simulation, tests, signed bundle revisions.

A policy is one document (RolePolicy, RegoPolicy, BudgetPolicy, PolicyTest) named by its
`metadata.name`. Writing a source creates or updates drafts; publishing validates the whole
draft set, runs its PolicyTests, compiles and signs a bundle revision, and only then marks
the versions published. Anything that fails leaves the published set and bundle untouched.
Parsing, compiling and evaluating a tenant's Rego run in the Rego sandbox's worker processes
(rego_sandbox.py), under its time and memory limits; only signing stays in this process.

Modules: `versions` (policies and versions as stored), `drafts` (validate, check, apply,
delete), `evaluation` (the prepared set, simulate, test), `revisions` (published bundle
revisions), `publishing` (build, publish, rollback, re-sign). Callers use this package:
`policies.publish(...)`.
"""

from __future__ import annotations

from control_plane.services.policies.drafts import (
    Applied,
    Drafts,
    applied_drafts,
    apply,
    check,
    delete,
    drafts_without,
    parse,
    validate,
)
from control_plane.services.policies.evaluation import (
    Prepared,
    compile_context,
    describe,
    prepare,
    prepare_selected,
    selected_versions,
    simulate,
    test,
)
from control_plane.services.policies.publishing import (
    Built,
    build,
    publish,
    refresh,
    refresh_everywhere,
    resign_with_organization_keys,
    rollback,
)
from control_plane.services.policies.revisions import (
    current_revision,
    list_revisions,
    published_budgets,
    released_under_key,
    revision_versions,
)
from control_plane.services.policies.versions import (
    PolicySource,
    diff,
    draft_versions,
    get_policy,
    get_policy_source,
    get_version,
    latest_source,
    list_policies,
    list_versions,
    read_sources,
    status,
)

__all__ = [
    "Applied",
    "Built",
    "Drafts",
    "PolicySource",
    "Prepared",
    "applied_drafts",
    "apply",
    "build",
    "check",
    "compile_context",
    "current_revision",
    "delete",
    "describe",
    "diff",
    "draft_versions",
    "drafts_without",
    "get_policy",
    "get_policy_source",
    "get_version",
    "latest_source",
    "list_policies",
    "list_revisions",
    "list_versions",
    "parse",
    "prepare",
    "prepare_selected",
    "publish",
    "published_budgets",
    "read_sources",
    "refresh",
    "refresh_everywhere",
    "released_under_key",
    "resign_with_organization_keys",
    "revision_versions",
    "rollback",
    "selected_versions",
    "simulate",
    "status",
    "test",
    "validate",
]
