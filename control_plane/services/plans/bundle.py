"""The executions-per-month limit as a BudgetPolicy in the organisation's bundle.

Like the built-in roles, the document is generated, not authored: `policies.prepare` adds
it to every set it compiles (publish, rollback, re-sign, simulate, tests), so each bundle
carries the plan's limit and the sidecars enforce it at decision time, also while the
control plane is down. A tenant document of the same name does not replace it: the set
then fails validation (duplicate name), so a tenant cannot lift its own quota.

The budget counts every `invoke` / `run` of the organisation (`scope: org`, `metric:
executions`, `period: month`); past `limit` calls are denied with a reason naming the
plan's budget. It has no `soft_limit`: the engine holds every call past a soft limit for
approval, and a plan's 90 % mark must warn, not stop a tenant's traffic: the control
plane warns from the sidecars' reports instead (`warnings.py`).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.services.plans.quotas import plan_of

DOCUMENT_NAME = "plan-quota"
# Not a possible policy name (names take no "<"), so no tenant source can shadow it.
SOURCE_FILE = "<plan-quota>"


def budget_name(plan_name: str) -> str:
    return f"{plan_name}-plan-executions"


def render(plan_name: str, limit: int) -> str:
    return (
        "apiVersion: kaizen.studio/v1\n"
        "kind: BudgetPolicy\n"
        f"metadata: {{name: {DOCUMENT_NAME}}}\n"
        "spec:\n"
        "  budgets:\n"
        f"    - name: {budget_name(plan_name)}\n"
        "      scope: org\n"
        "      metric: executions\n"
        "      period: month\n"
        f"      limit: {limit}\n"
        "      actions: [invoke, run]\n"
    )


async def plan_source(session: AsyncSession) -> tuple[str, str] | None:
    """`(filename, text)` of the session's organisation's plan budget; None when unlimited."""
    state = await plan_of(session)
    limit = state.limits["executions_per_month"]
    if limit is None:
        return None
    return SOURCE_FILE, render(state.plan.name, limit)
