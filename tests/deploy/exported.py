"""The metric names our processes export, read from their real registries."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from authz_sidecar import metrics as sidecar_metrics  # noqa: F401, TID251  (its registry)
from control_plane.observability import Metrics

# Prometheus' own series for every scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")
_NAME = re.compile(r"\b(kaizen_[a-z0-9_]+|up)\b")
_RECORDED = re.compile(r"\bkaizen:[a-z0-9_:]+")


def exported_names() -> set[str]:
    """Every series name a scrape of the control plane or a sidecar can return."""
    registries: list[CollectorRegistry] = [Metrics().registry, REGISTRY]
    names: set[str] = set(SCRAPE_SERIES)
    for registry in registries:
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            names.add(family.name)
            names.update(family.name + suffix for suffix in _SUFFIXES)
            names.update(sample.name for sample in family.samples)
    return names


def names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (recording rules' `kaizen:` names aside)."""
    return set(_NAME.findall(_RECORDED.sub(" ", expr)))
