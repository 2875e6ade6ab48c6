"""The plans as data: Free, Pro and Enterprise, their limits, and Enterprise overrides.

A limit is a whole number or None (unlimited). `executions_per_month` is not counted here:
it compiles into the organisation's bundle as an org-scope budget the sidecars enforce
(`bundle.py`); the others are counted by the control plane when something is created
(`quotas.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from control_plane.errors import Invalid

Limits = Mapping[str, int | None]

LIMIT_NAMES: tuple[str, ...] = ("users", "agents", "gateways", "executions_per_month")
# What each counted limit counts, for messages.
NOUNS: Mapping[str, str] = MappingProxyType(
    {
        "users": "members",
        "agents": "agents",
        "gateways": "gateways",
        "executions_per_month": "executions this month",
    }
)
# The engine's budgets are floats; 10^12 is far past any plan and exact as a float.
MAX_LIMIT = 10**12
UNLIMITED_WORDS = frozenset({"unlimited", "none", "inf"})


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    limits: Limits
    # Whether an organisation on this plan may carry its own limits (a contract).
    overridable: bool = False
    # Served by the operator's shared platform gateway when one is registered (ADR 0012):
    # new organisations are placed on it, and one placed there registers no gateway of its own.
    shared_gateway: bool = False


PLANS: Mapping[str, Plan] = MappingProxyType(
    {
        "free": Plan(
            "free",
            "Free",
            MappingProxyType(
                {"users": 3, "agents": 10, "gateways": 1, "executions_per_month": 10_000}
            ),
            shared_gateway=True,
        ),
        "pro": Plan(
            "pro",
            "Pro",
            MappingProxyType(
                {"users": None, "agents": 100, "gateways": 1, "executions_per_month": 100_000}
            ),
        ),
        "enterprise": Plan(
            "enterprise",
            "Enterprise",
            MappingProxyType({name: None for name in LIMIT_NAMES}),
            overridable=True,
        ),
    }
)
# An organisation without a plan row is on this one (fail closed: the smallest).
FALLBACK_PLAN = "free"


def plan_named(name: str, *, field: str = "plan") -> Plan:
    plan = PLANS.get(name)
    if plan is None:
        raise Invalid(
            f"no plan named {name!r}; the plans are {', '.join(PLANS)}",
            details=[{"field": field, "message": f"one of {', '.join(PLANS)}"}],
        )
    return plan


def check_overrides(plan: Plan, overrides: Mapping[str, int | None]) -> dict[str, int | None]:
    """Overrides as stored: known limit names, whole numbers ≥ 0 or None; Enterprise only."""
    if overrides and not plan.overridable:
        raise Invalid(
            f"the {plan.title} plan has fixed limits; only "
            + ", ".join(p.title for p in PLANS.values() if p.overridable)
            + " takes per-organisation limits",
            details=[{"field": "limits", "message": "not on this plan"}],
        )
    checked: dict[str, int | None] = {}
    for name, value in overrides.items():
        if name not in LIMIT_NAMES:
            raise Invalid(
                f"no limit named {name!r}; the limits are {', '.join(LIMIT_NAMES)}",
                details=[{"field": f"limits.{name}", "message": "unknown limit"}],
            )
        ok = value is None or (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_LIMIT
        )
        if not ok:
            raise Invalid(
                f"limit {name} must be a whole number from 0 to {MAX_LIMIT} or unlimited",
                details=[{"field": f"limits.{name}", "message": "a whole number or unlimited"}],
            )
        checked[name] = value
    return checked


def parse_limit_arguments(items: Iterable[str]) -> dict[str, int | None]:
    """`name=value` pairs (the CLI's `--limit`), `value` a whole number or `unlimited`."""
    parsed: dict[str, int | None] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise Invalid(
                f"--limit {item!r}: write name=value, e.g. gateways=10 or agents=unlimited",
                details=[{"field": "limits", "message": "name=value"}],
            )
        if raw.lower() in UNLIMITED_WORDS:
            parsed[name] = None
        elif raw.isdigit():
            parsed[name] = int(raw)
        else:
            raise Invalid(
                f"--limit {item!r}: the value is a whole number or 'unlimited'",
                details=[{"field": f"limits.{name}", "message": "a whole number or unlimited"}],
            )
    return parsed


def effective_limits(plan: Plan, overrides: Mapping[str, int | None]) -> dict[str, int | None]:
    return {name: overrides.get(name, plan.limits[name]) for name in LIMIT_NAMES}
