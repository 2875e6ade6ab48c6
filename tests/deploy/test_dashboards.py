"""Dashboards as code: the committed JSON is what deploy/grafana/dashboards.py generates, it
loads into grafana-foundation-sdk's Dashboard model, and every panel's query (and every
template variable's) reads only metrics the control plane or the sidecar export."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.deploy.exported import exported_names, names_in

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
FILES = sorted((GRAFANA / "dashboards").glob("*.json"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kaizen_dashboards", GRAFANA / "dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in board["panels"]:
        panels.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return panels


def test_the_five_dashboards_exist() -> None:
    assert {p.stem for p in FILES} == {
        "platform-overview",
        "organization-usage",
        "gateway-performance",
        "cost-analytics",
        "compliance-status",
    }


def test_committed_json_is_what_the_code_generates() -> None:
    generated = _generator().render()
    assert sorted(generated) == [p.name for p in FILES]
    for path in FILES:
        assert path.read_text() == generated[path.name], (
            f"{path.name} is stale: run .venv/bin/python deploy/grafana/dashboards.py"
        )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_dashboard_loads_into_the_sdk_model(path: Path) -> None:
    data = json.loads(path.read_text())
    board = Dashboard.from_json(data)
    assert board.uid == data["uid"]
    assert board.title
    assert len(board.panels or []) == len(data["panels"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_panel_query_names_an_exported_metric(path: Path) -> None:
    exported = exported_names()
    board = json.loads(path.read_text())
    panels = _panels(board)
    assert panels
    for panel in panels:
        targets = panel.get("targets") or []
        assert targets, f"{panel['title']}: no query"
        for target in targets:
            named = names_in(target["expr"])
            assert named, f"{panel['title']}: {target['expr']!r} names no metric"
            assert named <= exported, f"{panel['title']}: not exported: {named - exported}"
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.match(r"label_values\((\w+),", variable["query"])
            assert match, variable["query"]
            assert names_in(match.group(1)) <= exported


def test_the_chart_ships_the_dashboards() -> None:
    from tests.deploy.helm import CHART, by_kind, render

    maps = [
        c
        for c in by_kind(render(CHART / "ci" / "gateway-values.yaml"), "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboards")
    ]
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert maps[0]["data"] == {p.name: p.read_text() for p in FILES}
