"""Prometheus metrics of one sidecar (all its workers when PROMETHEUS_MULTIPROC_DIR is set).

The process model sets PROMETHEUS_MULTIPROC_DIR before it starts workers, so whichever
worker answers `/metrics` reports the sum over all of them.
"""

from __future__ import annotations

import os

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


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
