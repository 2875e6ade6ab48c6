"""The Rego work the control plane does for a tenant, as plain functions of plain data.

Everything here compiles or evaluates a tenant's policies, so it runs inside the Rego
sandbox's worker processes (rego_sandbox.py), never in the control plane's own process: a
pathological rule can then only exhaust a worker, which is killed and replaced. Arguments
and results cross a process boundary, so they are picklable data; errors are the control
plane's own (`Invalid`, `NotFound`), which the sandbox raises again on the caller's side.
This module imports only `policy/` and `control_plane.errors`, keeping workers light.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from control_plane.errors import Invalid
from policy.compile.compiler import CompileContext, CompiledPolicy, CompileError, compile_policy
from policy.compile.rego_compile import RegoCompileError
from policy.compile.testrunner import PolicyTestReport, run_policy_tests
from policy.documents.parse import parse_policy_source
from policy.documents.policy_set import PolicySet
from policy.engine.decide import DecisionEngine
from policy.errors import PolicyValidationError

SOURCE_FILE = "source"
RISKY = frozenset({("allow", "deny"), ("allow", "require_approval"), ("deny", "allow")})
# Progress (and the heartbeat) of a replay is written at least this often while it runs.
SLICE_SECONDS = 1.0


def invalid(exc: PolicyValidationError, message: str = "the policy is invalid") -> Invalid:
    details = [dict(d) for d in exc.details]
    first = details[0] if details else {}
    where = ", ".join(
        f"{k} {first[k]}" for k in ("document", "line", "column") if first.get(k) is not None
    )
    summary = f"{message}: {first.get('message', '')}" + (f" ({where})" if where else "")
    return Invalid(summary, details=details)


def parse(source: str) -> list[Any]:
    try:
        return parse_policy_source(source, SOURCE_FILE)
    except PolicyValidationError as exc:
        raise invalid(exc) from None


def policy_set(sources: list[tuple[str, str]]) -> PolicySet:
    try:
        return PolicySet.from_sources(sources)
    except PolicyValidationError as exc:
        raise invalid(exc, "the policy set is invalid") from None


def check_set(sources: list[tuple[str, str]]) -> None:
    """Only whether `sources` form a valid set (the set itself stays in the worker)."""
    policy_set(sources)


def validate(source: str) -> list[dict[str, Any]]:
    """Every problem in `source` on its own, as 422 details would list them."""
    try:
        parse_policy_source(source, SOURCE_FILE)
    except PolicyValidationError as exc:
        return [dict(d) for d in exc.details]
    return []


def compile_set(policies: PolicySet, context: CompileContext) -> CompiledPolicy:
    try:
        return compile_policy(policies, context)
    except (CompileError, RegoCompileError) as exc:
        raise Invalid(f"the policy set does not compile: {exc}") from None


def compile_sources(sources: list[tuple[str, str]], context: CompileContext) -> CompiledPolicy:
    return compile_set(policy_set(sources), context)


def simulate(
    sources: list[tuple[str, str]], context: CompileContext, decision_input: dict[str, Any]
) -> dict[str, Any]:
    engine = DecisionEngine(compile_sources(sources, context), cache_size=0)
    try:
        return engine.decide(decision_input, dry_run=True, explain=True).to_dict()
    finally:
        engine.close()


def run_tests(sources: list[tuple[str, str]], context: CompileContext) -> PolicyTestReport:
    policies = policy_set(sources)
    return run_policy_tests(policies, compile_set(policies, context))


def compile_and_test(
    sources: list[tuple[str, str]], context: CompileContext, *, run: bool
) -> tuple[CompiledPolicy, PolicyTestReport]:
    """What a publish needs evaluated: the compiled set and its tests' report. Signing the
    bundle needs no evaluation and stays with the caller, as does the signing key."""
    policies = policy_set(sources)
    compiled = compile_set(policies, context)
    report = run_policy_tests(policies, compiled) if run else PolicyTestReport(())
    return compiled, report


# -- replay ----------------------------------------------------------------------------------


@dataclass
class Tally:
    examples_per_transition: int
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        total = sum(self.counts.values())
        unchanged = sum(n for (old, new), n in self.counts.items() if old == new)
        changed = sorted(
            ((pair, n) for pair, n in self.counts.items() if pair[0] != pair[1]),
            key=lambda item: (-item[1], item[0]),
        )
        return {
            "total": total,
            "changed": total - unchanged,
            "unchanged": unchanged,
            "risky": sum(n for pair, n in self.counts.items() if pair in RISKY),
            "counts": {transition_key(*pair): n for pair, n in sorted(self.counts.items())},
            "transitions": [
                {
                    "from": old,
                    "to": new,
                    "count": n,
                    "risky": (old, new) in RISKY,
                    "examples": self.examples.get((old, new), []),
                }
                for (old, new), n in changed
            ],
        }


def transition_key(old: str, new: str) -> str:
    return f"{old}->{new}"


@dataclass(frozen=True)
class Logged:
    """One stored decision as a replay reads it (plain data, to cross into a worker)."""

    decision_id: str
    time: Any  # datetime
    outcome: str
    input: Any
    result: Any


def _summary(decision_input: Any) -> dict[str, Any]:
    logged = decision_input if isinstance(decision_input, Mapping) else {}

    def part(name: str) -> Mapping[str, Any]:
        value = logged.get(name)
        return value if isinstance(value, Mapping) else {}

    return {
        "principal": part("principal").get("id"),
        "action": logged.get("action"),
        "resource": part("resource").get("id"),
        "workspace": part("resource").get("workspace"),
        "channel": logged.get("channel"),
        "tool": part("tool").get("name"),
    }


def as_logged(decision_input: Any, organization_id: str) -> Any:
    """The logged input, its principal defaulting to this organisation (as simulate does).
    Anything that is no mapping goes to the engine as it is, which denies it as invalid."""
    if not isinstance(decision_input, Mapping):
        return decision_input
    prepared = dict(decision_input)
    principal = prepared.get("principal")
    if isinstance(principal, Mapping):
        prepared["principal"] = {"organization": organization_id, **principal}
    return prepared


def evaluate(
    engine: DecisionEngine,
    rows: Sequence[Any],
    tally: Tally,
    organization_id: str,
    *,
    budget_seconds: float = SLICE_SECONDS,
) -> int:
    """Decide `rows` again (at least one, then until the time budget runs out); how many."""
    deadline = time.monotonic() + budget_seconds
    done = 0
    for row in rows:
        decision_input = as_logged(row.input, organization_id)
        new = engine.decide(decision_input, dry_run=True).outcome
        pair = (row.outcome, new)
        tally.counts[pair] += 1
        kept = tally.examples.setdefault(pair, []) if row.outcome != new else None
        if kept is not None and len(kept) < tally.examples_per_transition:
            explained = engine.decide(decision_input, dry_run=True, explain=True)
            logged = row.result if isinstance(row.result, Mapping) else {}
            kept.append(
                {
                    "decision_id": row.decision_id,
                    "time": row.time.isoformat(),
                    "input": _summary(row.input),
                    "old": {
                        "outcome": row.outcome,
                        "reasons": [str(r) for r in logged.get("reasons") or []],
                        "rules": [str(r) for r in logged.get("matched_rules") or []],
                    },
                    "new": {
                        "outcome": explained.outcome,
                        "reasons": list(explained.reasons),
                        "rules": list(explained.matched_rules),
                    },
                }
            )
        done += 1
        if time.monotonic() >= deadline:
            break
    return done


# A worker keeps the engines of the replays it served last, so a long replay compiles its
# set once per worker rather than once per slice. Keyed by the caller's plan key.
_ENGINES: OrderedDict[str, DecisionEngine] = OrderedDict()
_ENGINES_KEPT = 2


def _engine(key: str, sources: list[tuple[str, str]], context: CompileContext) -> DecisionEngine:
    engine = _ENGINES.pop(key, None)
    if engine is None:
        engine = DecisionEngine(compile_sources(sources, context), cache_size=10_000)
    _ENGINES[key] = engine
    while len(_ENGINES) > _ENGINES_KEPT:
        _ENGINES.popitem(last=False)[1].close()
    return engine


def replay_slice(
    key: str,
    sources: list[tuple[str, str]],
    context: CompileContext,
    rows: list[Logged],
    tally: Tally,
) -> tuple[int, Tally]:
    """Decide `rows` again for one time slice; how many were done and the updated tally."""
    done = evaluate(_engine(key, sources, context), rows, tally, context.organization_id)
    return done, tally


def replay_probe(
    key: str, sources: list[tuple[str, str]], context: CompileContext, first: Logged | None
) -> None:
    """Compile the set and decide the window's first stored decision, so a set that cannot
    decide one logged request within the limits is refused before a job exists."""
    engine = _engine(key, sources, context)
    if first is not None:
        engine.decide(as_logged(first.input, context.organization_id), dry_run=True)
