"""A plain-http control plane off this host: the gateway credential would cross the network
in clear, and anyone on the path could answer in the control plane's name (the attacks of
test_bundle_scope.py and test_bundle_replay.py). The real sidecar and gateway processes
refuse to start with such a URL, naming the setting, unless the operator explicitly allows
it; loopback (every process on one machine, as `kaizen-studio up`) and https are fine.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e import sidecar_procs as procs
from tests.security import bundle_attacks as attack

CREDENTIAL = "kgw_" + "c" * 40
PLAIN = "http://control-plane.example.com:8000"


def _start(kind: str, home: Path, **env: str) -> subprocess.Popen[bytes]:
    settings = {
        "KAIZEN_HOME": str(home),
        "KAIZEN_GATEWAY_TOKEN": CREDENTIAL,
        "KAIZEN_SIDECAR_GRPC_PORT": str(procs.free_port()),
        "KAIZEN_SIDECAR_HTTP_PORT": str(procs.free_port()),
        "KAIZEN_GATEWAY_PORT": str(procs.free_port()),
    }
    environ = procs.clean_env(**{**settings, **env})
    return procs.spawn([str(procs.BIN / "kaizen-studio"), kind], env=environ)


@pytest.mark.parametrize("kind", ["sidecar", "gateway"])
def test_plain_http_control_plane_url_is_refused_at_start(kind: str, tmp_path: Path) -> None:
    process = _start(kind, tmp_path, KAIZEN_CONTROL_PLANE_URL=PLAIN)
    try:
        code = process.wait(30)
        output = procs.output(process)
    finally:
        procs.stop(process)
    assert code == 2, output
    assert f"KAIZEN_CONTROL_PLANE_URL '{PLAIN}' is plain http to another host" in output
    assert "KAIZEN_ALLOW_INSECURE_CONTROL_PLANE=true" in output


@pytest.mark.parametrize("kind", ["sidecar", "gateway"])
def test_plain_http_control_plane_url_starts_only_when_explicitly_allowed(
    kind: str, tmp_path: Path
) -> None:
    port = procs.free_port()
    process = _start(
        kind,
        tmp_path,
        KAIZEN_CONTROL_PLANE_URL=PLAIN,
        KAIZEN_ALLOW_INSECURE_CONTROL_PLANE="true",
        KAIZEN_SIDECAR_HTTP_PORT=str(port),
        KAIZEN_GATEWAY_PORT=str(port),
    )
    runtime = attack.Runtime(process, f"http://127.0.0.1:{port}")
    try:
        attack.wait_for(runtime.answers, f"the {kind} to listen")
    finally:
        procs.stop(process)
