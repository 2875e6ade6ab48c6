"""Prometheus metrics of one sidecar (all its workers when PROMETHEUS_MULTIPROC_DIR is set).

The process model sets PROMETHEUS_MULTIPROC_DIR before it starts workers, so whichever
worker answers `/metrics` reports the sum over all of them.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

DECISIONS = Counter(
    "kaizen_sidecar_decisions_total", "Decisions by outcome and status", ["outcome", "status"]
)
DECISION_SECONDS = Histogram(
    "kaizen_sidecar_decision_seconds",
    "Time to answer one authorization check, in seconds",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
_DECISION_CHILDREN: dict[tuple[str, int], Counter] = {}


def decisions(outcome: str, status: int) -> Counter:
    """`DECISIONS` for one outcome and status; the child is looked up once (`labels()`
    takes a lock and builds a key on every call, a visible share of a check's CPU)."""
    child = _DECISION_CHILDREN.get((outcome, status))
    if child is None:
        child = _DECISION_CHILDREN[(outcome, status)] = DECISIONS.labels(outcome, str(status))
    return child


BUNDLE_REVISION = Gauge(
    "kaizen_sidecar_bundle_revision", "Revision of the bundle being served", multiprocess_mode="max"
)
SYNC_FAILURES = Counter("kaizen_sidecar_bundle_sync_failures_total", "Failed bundle syncs")
LOG_BACKLOG = Gauge(
    "kaizen_sidecar_decision_log_backlog",
    "Decision records not yet acknowledged by the control plane",
    multiprocess_mode="livesum",
)
LOG_FAILURES = Counter(
    "kaizen_sidecar_decision_log_failures_total", "Decision records that could not be buffered"
)


BUNDLE_ISSUED = Gauge(
    "kaizen_sidecar_bundle_issued_timestamp_seconds",
    "When the bundle being served was signed (its iat, Unix seconds): age = time() - this",
    multiprocess_mode="max",
)
BUNDLE_REFUSED = Counter(
    "kaizen_sidecar_bundle_refused_total",
    "Bundles refused: bad signature, unknown key, wrong scope or older revision",
)
BUDGET_EXCEEDED = Counter(
    "kaizen_sidecar_budget_exceeded_total", "Checks denied because a budget's limit is reached"
)
LOG_LAG = Gauge(
    "kaizen_sidecar_decision_log_shipping_lag_seconds",
    "Seconds since this worker's decision log last had nothing left to ship (0: caught up)",
    multiprocess_mode="max",
)
CACHE_LOOKUPS = Counter(
    "kaizen_sidecar_cache_lookups_total",
    "Lookups of the decision caches (rbac, abac) and the access-token cache, by result",
    ["cache", "result"],
)
BUNDLE_REFUSED.inc(0)
_D = TypeVar("_D")
BUDGET_EXCEEDED.inc(0)


def count_budget(decision: _D) -> _D:
    """`decision`, counted in BUDGET_EXCEEDED when a budget's hard limit denied it."""
    seen: Any = decision
    if (
        seen.budget is not None
        and seen.outcome == "deny"
        and any(rule.endswith(":limit") for rule in seen.matched_rules)
    ):
        BUDGET_EXCEEDED.inc()
    return decision


class _Counting(Protocol):
    hits: int
    misses: int


class Observer:
    """Copies counters kept as plain ints on the check path (cache hits and misses, refused
    bundles) into Prometheus every few seconds, off the check path, with the shipping lag."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}
        self._refused = 0
        self._caught_up = time.time()

    def observe(self, *, sync: Any, log: Any, snapshot: Any) -> None:
        if sync is not None and sync.refused > self._refused:
            BUNDLE_REFUSED.inc(sync.refused - self._refused)
            self._refused = sync.refused
        if log is not None:
            now = time.time()
            if log.backlog == 0:
                self._caught_up = now
            LOG_LAG.set(now - self._caught_up)
        if snapshot is not None:
            engine, authn = snapshot.engine, snapshot.authenticator
            self._cache("rbac", getattr(engine, "_rbac_cache", None))
            self._cache("abac", getattr(engine, "_abac_cache", None))
            self._cache("token", authn)

    def _cache(self, name: str, cache: _Counting | None) -> None:
        """Add what `cache` counted since last time (a new bundle brings new caches)."""
        if cache is None:
            return
        key = (name, f"{id(cache)}")
        hits, misses = self._seen.get(key, (0, 0))
        if key not in self._seen:
            self._seen = {k: v for k, v in self._seen.items() if k[0] != name}
        CACHE_LOOKUPS.labels(name, "hit").inc(cache.hits - hits)
        CACHE_LOOKUPS.labels(name, "miss").inc(cache.misses - misses)
        self._seen[key] = (cache.hits, cache.misses)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
