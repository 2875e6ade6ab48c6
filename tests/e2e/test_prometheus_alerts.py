"""M13: a real Prometheus (Debian's `prometheus`) scrapes a real control plane and a real
sidecar with deploy/prometheus/kaizen-alerts.yaml loaded, and two provoked conditions fire
their alerts, read back through Prometheus' HTTP API:

- a burst of 5xx: the control plane's database refuses connections (its /healthz answers
  503) -> KaizenHighErrorRate;
- a stopped gateway: the sidecar is killed -> KaizenGatewayDown.

The rules are loaded as they are, but for `for:` (set to 0s: promtool's unit tests in
tests/deploy cover the pending durations) and a 1 s scrape and evaluation interval.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from tests.conftest import POSTGRES_URL
from tests.e2e import sidecar_procs as procs
from tests.e2e.accounts import sign_up

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "kaizen-alerts.yaml"
POLICY = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:ops@example.com", role: agent-user}
"""


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {timeout} s")


def _prometheus_config(tmp_path: Path, control_plane: int, sidecar: int, token: str) -> Path:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [
            {
                "job_name": "kaizen-control-plane",
                "static_configs": [{"targets": [f"127.0.0.1:{control_plane}"]}],
                "authorization": {"type": "Bearer", "credentials": token},
            },
            {
                "job_name": "kaizen-sidecar",
                "static_configs": [{"targets": [f"127.0.0.1:{sidecar}"]}],
            },
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _firing(prometheus: str, name: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts").json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_prometheus_scrapes_both_runtimes_and_fires_provoked_alerts(
    control_plane: procs.ControlPlane,
    database: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: scripts/test-deps.sh installs Debian's prometheus package"
    # As the chart runs it: /metrics (it names tenants) only for Prometheus' bearer token.
    token = secrets.token_urlsafe(24)
    control_plane.stop()
    control_plane.env["KAIZEN_METRICS_TOKEN"] = token
    control_plane.start()
    assert httpx.get(f"{control_plane.url}/metrics").status_code == 401
    cp, _owner, admin = sign_up(control_plane, request, "ops@example.com", "Ops")
    assert cp.post("/api/v1/policies", json={"source": POLICY}, headers=admin).status_code == 201
    assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    ).json()
    grpc_port, http_port, web = procs.free_port(), procs.free_port(), procs.free_port()
    config = _prometheus_config(tmp_path, control_plane.port, http_port, token)
    prometheus = f"http://127.0.0.1:{web}"
    sidecar = procs.start_sidecar(
        tmp_path / "sidecar",
        grpc_port,
        http_port,
        KAIZEN_GATEWAY_TOKEN=gateway["credential"],
        KAIZEN_CONTROL_PLANE_URL=control_plane.url,
    )
    server = procs.spawn(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ]
    )
    with procs.running(server), procs.running(sidecar):
        # Both targets are scraped, and what they export arrives: the sidecar's bundle
        # revision and age, the gateway seen by the control plane, requests by status.
        def both_up() -> bool:
            try:
                up = _query(prometheus, "up == 1")
            except httpx.HTTPError:
                return False
            return {r["metric"]["job"] for r in up} == {"kaizen-control-plane", "kaizen-sidecar"}

        _eventually(both_up, 60, "Prometheus scraping the control plane and the sidecar")
        revision = _eventually(
            lambda: _query(prometheus, "kaizen_sidecar_bundle_revision >= 1"), 30, "bundle"
        )
        assert revision[0]["metric"]["job"] == "kaizen-sidecar"
        age = _eventually(
            lambda: _query(prometheus, "time() - kaizen_sidecar_bundle_issued_timestamp_seconds"),
            30,
            "bundle age: " + str(_query(prometheus, '{__name__=~"kaizen_sidecar_bundle.*"}')),
        )
        assert 0 <= float(age[0]["value"][1]) < 600
        seen = _eventually(
            lambda: _query(prometheus, "kaizen_gateway_last_seen_timestamp_seconds"), 30, "seen"
        )
        assert seen[0]["metric"]["gateway"] == "edge"
        assert _firing(prometheus, "KaizenHighErrorRate") == []
        assert _firing(prometheus, "KaizenGatewayDown") == []

        # A burst of 5xx: the database refuses the control plane's connections.
        name = re.sub(r"^.*/", "", database)
        _refuse_connections(name, True)
        try:
            statuses = {cp.get("/healthz").status_code for _ in range(60)}
            assert statuses == {503}
            firing = _eventually(
                lambda: _firing(prometheus, "KaizenHighErrorRate"), 60, "KaizenHighErrorRate"
            )
            assert firing[0]["labels"]["severity"] == "page"
        finally:
            _refuse_connections(name, False)

        # A stopped gateway: its sidecar is gone.
        procs.stop(sidecar)
        down = _eventually(
            lambda: _firing(prometheus, "KaizenGatewayDown"), 60, "KaizenGatewayDown"
        )
        assert down[0]["labels"]["instance"] == f"127.0.0.1:{http_port}"


def _refuse_connections(database: str, refuse: bool) -> None:
    async def run() -> None:
        admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
        try:
            allow = "false" if refuse else "true"  # a connection limit spares superusers
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allow}')
            if refuse:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    database,
                )
        finally:
            await admin.close()

    asyncio.run(run())
