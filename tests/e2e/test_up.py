"""The README's run command, for real: `kaizen-studio up` in its own process, on a fresh
`$KAIZEN_HOME`, driven over HTTP through the "done when" tour, then stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kaizen_studio.client import KaizenClient
from tests.conftest import running_descendants
from tests.e2e.mcp_oauth_client import Browser, Memory, connect

PASSWORD = "correct horse battery staple"
SUPPORT_BOT = """\
kind: Agent
metadata: {name: support-bot}
spec:
  model: {provider: demo, name: demo}
  system_prompt: You help.
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A free port whose successor is free too: `up` puts Envoy's admin on port + 1."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


def _kaizen_studio() -> str:
    return str(Path(sys.executable).with_name("kaizen-studio"))


@pytest.fixture
def running_up(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], str]]:
    port, envoy = free_port(), free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env["KAIZEN_HOME"] = str(tmp_path / "home")
    env["KAIZEN_SIDECAR_GRPC_PORT"] = str(free_port())
    env["KAIZEN_SIDECAR_HTTP_PORT"] = str(free_port())
    env["KAIZEN_GATEWAY_PORT"] = str(free_port())
    env["KAIZEN_ENVOY_PORT"] = str(envoy)
    process = subprocess.Popen(
        [_kaizen_studio(), "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
    else:
        process.kill()
        pytest.fail("kaizen-studio up did not become healthy in 30 s")
    yield url, process, f"http://127.0.0.1:{envoy}"
    # Stop it as a user would (Ctrl-C), so `up` stops its children; a SIGKILL here is what
    # used to leave a control plane, a sidecar and a gateway running after the suite.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    if process.stdout:
        process.stdout.close()


def test_up_serves_the_done_when_tour_and_stops_on_ctrl_c(
    running_up: tuple[str, subprocess.Popen[str], str], tmp_path: Path
) -> None:
    url, process, gateway = running_up
    with httpx.Client(base_url=url, timeout=10) as http:
        signup = http.post(
            "/api/v1/auth/signup",
            json={"email": "ada@example.com", "password": PASSWORD, "organization": "Acme"},
        )
        assert signup.status_code == 201
        login = http.post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200
        owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert http.post("/api/v1/teams", json={"name": "sre"}, headers=owner).status_code == 201
        workspace = http.post(
            "/api/v1/workspaces", json={"name": "prod", "environment": "prod"}, headers=owner
        )
        assert workspace.status_code == 201
        key = http.post(
            "/api/v1/api-keys", json={"name": "ci-bot", "role": "developer"}, headers=owner
        )
        assert key.status_code == 201
        me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {key.json()['key']}"})
        assert me.status_code == 200
        assert me.json()["kind"] == "api_key"
        assert me.json()["organization_name"] == "Acme"
        metrics = http.get("/metrics").text
        assert 'route="/api/v1/me"' in metrics

    # The demo organisation `up` made: its agent answers through Envoy → sidecar → gateway.
    saved = tmp_path / "home" / "demo.json"
    invoke = f"{gateway}/v1/agents/demo-bot/invoke"
    demo, answer = _demo_answers(tmp_path / "home", gateway, process)
    caller = {"Authorization": f"Bearer {demo['api_key']}"}
    assert saved.stat().st_mode & 0o077 == 0
    assert "demo provider" in answer.json()["output"]
    denied = httpx.post(
        f"{gateway}/v1/agents/restricted-bot/invoke", json={"input": "hi"}, headers=caller
    )
    assert denied.status_code == 403
    assert denied.json()["reasons"] == ["restricted-bot is only for the sre team"]
    assert httpx.post(invoke, json={"input": "hi"}).status_code == 401
    cli = subprocess.run(
        [_kaizen_studio(), "call", "demo-bot", "--input", "hi", "--gateway", gateway],
        env={**os.environ, "KAIZEN_API_KEY": demo["api_key"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    # The tour's API steps through the typed client (kaizen_studio.client).
    with KaizenClient(url) as kaizen:
        tokens = kaizen.auth.login(demo["email"], demo["password"])
        owner = {"Authorization": f"Bearer {tokens.access_token}"}
        deadline = time.monotonic() + 30
        channels: set[str | None] = set()
        while time.monotonic() < deadline and not {"api", "cli"} <= channels:
            channels = {e.channel for e in kaizen.executions.list().items}
            time.sleep(0.2)
        assert {"api", "cli"} <= channels
        assert {"allow", "deny"} <= {d.outcome for d in kaizen.decisions.search()}

        kaizen.agents.apply(SUPPORT_BOT)
        (local,) = kaizen.gateways.list().items
        deployed = kaizen.deployments.create(local.id, "agent", "support-bot")
        assert deployed.endpoints.mcp == f"{gateway}/mcp"

    # The README tour's OAuth step: an MCP client from nothing but the gateway's URL (the
    # sidecar knows its MCP URL from the bundle: `up` registered the gateway with it).
    switched = httpx.put(
        f"{url}/api/v1/oauth/settings",
        json={"dynamic_registration": True, "metadata_documents": True},
        headers=owner,
    )
    assert switched.status_code == 200, switched.text
    deadline = time.monotonic() + 30
    while True:  # the deployment reaches the gateway with the bundle it was signed into
        tools, mcp_answer = asyncio.run(
            connect(
                f"{gateway}/mcp",
                Browser(url, owner),
                Memory(),
                call="demo-bot",
                callback="http://127.0.0.1:33420/callback",
            )
        )
        if "support-bot" in tools or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"demo-bot", "support-bot"} <= tools
    assert "restricted-bot" not in tools  # only what policy lets the owner invoke
    assert "demo provider" in mcp_answer

    assert (tmp_path / "home" / "kaizen.db").exists()
    assert (tmp_path / "home" / "master.key").stat().st_mode & 0o077 == 0

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert f"control plane   {url}" in output
    assert "/api/v1/auth/signup" in output
    assert PASSWORD not in output
    assert key.json()["key"] not in output, "secrets never reach the logs"


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [_kaizen_studio(), "--help"], capture_output=True, text=True, check=True
    )
    for command in ("up", "control-plane", "db", "keys", "policy", "bundle"):
        assert command in result.stdout


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env["KAIZEN_HOME"] = str(tmp_path)
    result = subprocess.run(
        [_kaizen_studio(), "db", "upgrade"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kaizen.db").exists()


def _demo_answers(
    home: Path, gateway: str, process: subprocess.Popen[str]
) -> tuple[dict[str, Any], httpx.Response]:
    """Wait until `up` has made its demo and the demo agent answers through Envoy; on
    failure, say what was seen last and what `up` and its children logged."""
    deadline = time.monotonic() + 90
    seen = "demo.json not written"
    while time.monotonic() < deadline and process.poll() is None:
        try:
            demo = json.loads((home / "demo.json").read_text())
            answer = httpx.post(
                f"{gateway}/v1/agents/demo-bot/invoke",
                json={"input": "hello"},
                headers={"Authorization": f"Bearer {demo['api_key']}"},
                timeout=10,
            )
            if answer.status_code == 200:
                return demo, answer
            seen = f"{answer.status_code} {answer.text[:300]}"
        except (OSError, ValueError, httpx.TransportError) as exc:
            seen = f"{type(exc).__name__}: {exc}"  # not written yet, or not listening yet
        time.sleep(0.2)
    logs = "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted((home / "logs").glob("*.log"))
    )
    state = "running" if process.poll() is None else f"exited {process.returncode}"
    pytest.fail(f"the demo agent never answered through Envoy (up {state}; last: {seen})\n{logs}")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _wait_gone(pids: dict[int, str], timeout: float = 30) -> dict[int, str]:
    """The processes of `pids` still alive after waiting up to `timeout` for them to end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return {pid: command for pid, command in pids.items() if _alive(pid)}


def test_a_second_sigterm_to_up_still_stops_every_child(
    running_up: tuple[str, subprocess.Popen[str], str], tmp_path: Path
) -> None:
    _url, process, gateway = running_up
    _demo_answers(tmp_path / "home", gateway, process)
    children = running_descendants(process.pid)
    names = " ".join(children.values())
    for role in ("control-plane", "sidecar", "gateway", "envoy"):
        assert role in names, children
    envoy = next(pid for pid, command in children.items() if "envoy" in command.split()[0])

    process.send_signal(signal.SIGTERM)
    # The second SIGTERM lands while `up` is stopping the others (Envoy, stopped first, is
    # gone): it used to abandon the shutdown there and leave the rest running.
    assert not _wait_gone({envoy: children[envoy]})
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert _wait_gone(children) == {}, "children of up outlived it"


def test_a_killed_up_takes_its_children_with_it(
    running_up: tuple[str, subprocess.Popen[str], str], tmp_path: Path
) -> None:
    _url, process, gateway = running_up
    _demo_answers(tmp_path / "home", gateway, process)
    children = running_descendants(process.pid)
    assert len(children) >= 4, children

    process.kill()  # no chance to stop anything: the kernel must (PR_SET_PDEATHSIG)
    process.communicate(timeout=30)
    assert _wait_gone(children) == {}, "children of a killed up kept running"
