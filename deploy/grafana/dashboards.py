"""Kaizen Studio's Grafana dashboards as code (grafana-foundation-sdk).

    .venv/bin/python deploy/grafana/dashboards.py      # rewrites deploy/grafana/dashboards/*.json

The JSON is committed (Grafana's file provisioning and the chart's users load it as is);
tests/deploy/test_dashboards.py checks it equals this file's output and that every panel's
query reads only metrics the control plane or the sidecar export.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
ORG = 'organization=~"$organization"'


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref)


def series(title: str, unit: str, *queries: tuple[str, str], width: int = 12) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).span(width)
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    return panel


def single(title: str, unit: str, expr: str, width: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .with_target(_query(expr))
    )


def _board(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["kaizen-studio"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").type("prometheus"))
    )


def _organization_variable(board: dashboard.Dashboard) -> dashboard.Dashboard:
    return board.with_variable(
        dashboard.QueryVariable("organization")
        .label("Organisation")
        .datasource(DATASOURCE)
        .query("label_values(kaizen_executions_total, organization)")
        .multi(True)
        .include_all(True)
    )


def platform_overview() -> dashboard.Dashboard:
    latency = (
        "histogram_quantile({q}, sum by (le) "
        "(rate(kaizen_http_request_duration_seconds_bucket[5m])))"
    )
    return (
        _board("kaizen-platform", "Kaizen · Platform overview", "Control-plane health")
        .with_row(dashboard.Row("Requests"))
        .with_panel(
            series(
                "Request latency",
                "s",
                (latency.format(q=0.5), "p50"),
                (latency.format(q=0.95), "p95"),
                (latency.format(q=0.99), "p99"),
            )
        )
        .with_panel(
            series(
                "Error rate (5xx share)",
                "percentunit",
                (
                    'sum(rate(kaizen_http_requests_total{status=~"5.."}[5m]))'
                    " / sum(rate(kaizen_http_requests_total[5m]))",
                    "5xx",
                ),
            )
        )
        .with_panel(
            series(
                "Requests by status",
                "reqps",
                ("sum by (status) (rate(kaizen_http_requests_total[5m]))", "{{status}}"),
            )
        )
        .with_panel(
            series(
                "Execution throughput",
                "ops",
                ("sum by (status) (rate(kaizen_executions_total[5m]))", "{{status}}"),
            )
        )
        .with_row(dashboard.Row("Dependencies"))
        .with_panel(
            series(
                "Database connections",
                "short",
                ("sum by (instance, state) (kaizen_db_pool_connections)", "{{instance}} {{state}}"),
                ("sum by (instance) (kaizen_db_pool_capacity)", "{{instance}} capacity"),
            )
        )
        .with_panel(
            series(
                "Gateways: seconds since last report",
                "s",
                (
                    "time() - max by (organization, gateway) "
                    "(kaizen_gateway_last_seen_timestamp_seconds)",
                    "{{gateway}}",
                ),
            )
        )
        .with_panel(
            single("Control-plane replicas up", "short", 'sum(up{job="kaizen-control-plane"})')
        )
        .with_panel(single("Sidecars up", "short", 'sum(up{job="kaizen-sidecar"})'))
    )


def organization_usage() -> dashboard.Dashboard:
    board = _organization_variable(
        _board("kaizen-organizations", "Kaizen · Per-organisation usage", "Usage by tenant")
    )
    return (
        board.with_panel(
            series(
                "Executions by organisation",
                "ops",
                (
                    f"sum by (organization) (rate(kaizen_executions_total{{{ORG}}}[5m]))",
                    "{{organization}}",
                ),
            )
        )
        .with_panel(
            series(
                "Decisions by organisation and outcome",
                "ops",
                (
                    "sum by (organization, outcome) "
                    f"(rate(kaizen_decisions_ingested_total{{{ORG}}}[5m]))",
                    "{{organization}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            series(
                "Failed executions share",
                "percentunit",
                (
                    "sum by (organization) "
                    f'(rate(kaizen_executions_total{{{ORG},status="failed"}}[1h]))'
                    f" / sum by (organization) (rate(kaizen_executions_total{{{ORG}}}[1h]))",
                    "{{organization}}",
                ),
            )
        )
        .with_panel(
            single(
                "Executions (24 h)",
                "short",
                f"sum(increase(kaizen_executions_total{{{ORG}}}[24h]))",
            )
        )
    )


def gateway_performance() -> dashboard.Dashboard:
    check = (
        "histogram_quantile({q}, sum by (le) (rate(kaizen_sidecar_decision_seconds_bucket[5m])))"
    )
    return (
        _board("kaizen-gateways", "Kaizen · Gateway performance", "Sidecars and their decisions")
        .with_panel(
            series(
                "Authorization check latency",
                "s",
                (check.format(q=0.5), "p50"),
                (check.format(q=0.99), "p99"),
            )
        )
        .with_panel(
            series(
                "Decisions by outcome",
                "ops",
                ("sum by (outcome) (rate(kaizen_sidecar_decisions_total[5m]))", "{{outcome}}"),
            )
        )
        .with_panel(
            series(
                "Cache hit rate",
                "percentunit",
                (
                    'sum by (cache) (rate(kaizen_sidecar_cache_lookups_total{result="hit"}[5m]))'
                    " / sum by (cache) (rate(kaizen_sidecar_cache_lookups_total[5m]))",
                    "{{cache}}",
                ),
            )
        )
        .with_panel(
            series(
                "Bundle revision and age",
                "short",
                ("max by (instance) (kaizen_sidecar_bundle_revision)", "{{instance}} revision"),
                (
                    "time() - max by (instance) (kaizen_sidecar_bundle_issued_timestamp_seconds)",
                    "{{instance}} age (s)",
                ),
            )
        )
        .with_panel(
            series(
                "Decision-log backlog",
                "short",
                ("sum by (instance) (kaizen_sidecar_decision_log_backlog)", "{{instance}}"),
            )
        )
        .with_panel(
            series(
                "Decision-log shipping lag",
                "s",
                (
                    "max by (instance) (kaizen_sidecar_decision_log_shipping_lag_seconds)",
                    "{{instance}}",
                ),
            )
        )
        .with_panel(
            series(
                "Bundle sync failures and refusals",
                "short",
                (
                    "sum by (instance) (increase(kaizen_sidecar_bundle_sync_failures_total[15m]))",
                    "{{instance}} sync failures",
                ),
                (
                    "sum by (instance) (increase(kaizen_sidecar_bundle_refused_total[15m]))",
                    "{{instance}} refused",
                ),
            )
        )
        .with_panel(
            single("Sidecars down", "short", 'count(up{job="kaizen-sidecar"} == 0) or vector(0)')
        )
    )


def cost_analytics() -> dashboard.Dashboard:
    board = _organization_variable(
        _board("kaizen-cost", "Kaizen · Cost analytics", "Model spend reported by gateways")
    )
    return (
        board.with_panel(
            series(
                "Spend rate by organisation (USD/hour)",
                "currencyUSD",
                (
                    "sum by (organization) "
                    f"(rate(kaizen_execution_cost_usd_total{{{ORG}}}[1h])) * 3600",
                    "{{organization}}",
                ),
            )
        )
        .with_panel(
            single(
                "Spend (24 h)",
                "currencyUSD",
                f"sum(increase(kaizen_execution_cost_usd_total{{{ORG}}}[24h]))",
            )
        )
        .with_panel(
            single(
                "Cost per execution (24 h)",
                "currencyUSD",
                f"sum(increase(kaizen_execution_cost_usd_total{{{ORG}}}[24h]))"
                f" / sum(increase(kaizen_executions_total{{{ORG}}}[24h]))",
            )
        )
        .with_panel(
            series(
                "Calls denied by a budget",
                "short",
                (
                    "sum by (instance) (increase(kaizen_sidecar_budget_exceeded_total[1h]))",
                    "{{instance}}",
                ),
            )
        )
    )


def compliance_status() -> dashboard.Dashboard:
    return (
        _board(
            "kaizen-compliance",
            "Kaizen · Compliance status",
            "Chains, policy tests, approvals, security",
        )
        .with_panel(
            series(
                "Hash-chain verifications",
                "short",
                (
                    "sum by (chain, result) (increase(kaizen_chain_verifications_total[1h]))",
                    "{{chain}} {{result}}",
                ),
            )
        )
        .with_panel(
            single(
                "Broken chains found (7 d)",
                "short",
                'sum(increase(kaizen_chain_verifications_total{result="broken"}[7d]))',
            )
        )
        .with_panel(
            series(
                "Policy test cases",
                "short",
                ("sum by (result) (increase(kaizen_policy_test_cases_total[1h]))", "{{result}}"),
                (
                    "sum by (result) (increase(kaizen_policy_test_runs_total[1h]))",
                    "runs {{result}}",
                ),
            )
        )
        .with_panel(
            series(
                "Approvals: opened minus settled (24 h window)",
                "short",
                (
                    'sum(increase(kaizen_approvals_total{event="opened"}[24h]))'
                    " - sum(increase("
                    'kaizen_approvals_total{event=~"approved|denied|expired"}[24h]))',
                    "backlog growth",
                ),
                ("sum by (event) (increase(kaizen_approvals_total[1h]))", "{{event}}"),
            )
        )
        .with_panel(
            series(
                "Security events",
                "short",
                ("sum by (kind) (increase(kaizen_security_events_total[1h]))", "{{kind}}"),
                ("sum(increase(kaizen_sidecar_bundle_refused_total[1h]))", "bundle refused"),
            )
        )
    )


DASHBOARDS = {
    "platform-overview": platform_overview,
    "organization-usage": organization_usage,
    "gateway-performance": gateway_performance,
    "cost-analytics": cost_analytics,
    "compliance-status": compliance_status,
}


def render() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {
        f"{name}.json": encoder.encode(build().build()) + "\n" for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        json.loads(text)
    print(f"wrote {len(DASHBOARDS)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
