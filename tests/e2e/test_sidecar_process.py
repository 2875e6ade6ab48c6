"""`kaizen-studio sidecar` as a process: workers sharing ports, sync mode failing closed."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import httpx

from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import access_token, make_bundle, make_keys

REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
GATEWAY_TOKEN = "kgw_sidecar_process_credential"


def test_workers_share_the_ports_and_stop_cleanly(tmp_path: Path) -> None:
    keys = make_keys()
    (tmp_path / "bundle.tar.gz").write_bytes(make_bundle(keys))
    (tmp_path / "jwks.json").write_text(json.dumps(keys.jwks))
    grpc_port, http_port = procs.free_port(), procs.free_port()
    sidecar = procs.start_sidecar(
        tmp_path / "home",
        grpc_port,
        http_port,
        KAIZEN_SIDECAR_BUNDLE=str(tmp_path / "bundle.tar.gz"),
        KAIZEN_SIDECAR_JWKS=str(tmp_path / "jwks.json"),
        KAIZEN_REDIS_URL=REDIS_URL,
        KAIZEN_REDIS_PREFIX=f"kaizen-test-{secrets.token_hex(4)}:",
        KAIZEN_SIDECAR_WORKERS="2",
        # /status is the gateway's: it needs the gateway credential (nothing listens at the
        # control-plane URL; decision logs wait on disk).
        KAIZEN_GATEWAY_TOKEN=GATEWAY_TOKEN,
        KAIZEN_CONTROL_PLANE_URL=f"http://127.0.0.1:{procs.free_port()}",
    )
    with procs.running(sidecar):
        url = f"http://127.0.0.1:{http_port}"
        instances = set()
        for _ in range(60):  # a new connection each time: the kernel picks a worker
            status = httpx.get(
                f"{url}/status", headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
            )
            instances.add(status.json()["instance"])
            if len(instances) == 2:
                break
        assert len(instances) == 2
        headers = {
            "Authorization": f"Bearer {access_token(keys)}",
            "X-Original-Method": "POST",
            "X-Original-URI": "/v1/agents/a/invoke",
        }
        for _ in range(4):
            assert httpx.get(f"{url}/authz", headers=headers).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text  # the sum over both workers
        assert 'kaizen_sidecar_decisions_total{outcome="allow",status="200"} 4.0' in metrics
        assert procs.stop(sidecar) == 0


def test_sync_mode_without_a_bundle_is_not_ready_and_denies(tmp_path: Path) -> None:
    grpc_port, http_port = procs.free_port(), procs.free_port()
    sidecar = procs.start_sidecar(
        tmp_path / "home",
        grpc_port,
        http_port,
        wait=False,
        KAIZEN_GATEWAY_TOKEN="kgw_nobody_listens",
        KAIZEN_CONTROL_PLANE_URL=f"http://127.0.0.1:{procs.free_port()}",
    )
    with procs.running(sidecar):
        url = f"http://127.0.0.1:{http_port}"
        for _ in range(100):
            try:
                health = httpx.get(f"{url}/healthz")
                break
            except httpx.TransportError:
                procs.time.sleep(0.05)
        assert health.status_code == 503
        denied = httpx.post(f"{url}/authz", headers={"X-Original-URI": "/v1/agents/a/invoke"})
        assert denied.status_code == 403
        assert denied.json()["reasons"] == ["no verified policy bundle loaded"]
        assert procs.stop(sidecar) == 0
