"""A shared platform gateway's pod (ADR 0012), for the shared-gateway end-to-end tests: the
operator's `kaizen-studio platform-gateway create`, then one `kaizen-studio gateway` and
one `kaizen-studio sidecar` holding the platform credential and Envoy in front, waited for
until both serve every organisation named at its newest revision. Everything it starts
stops when the `with` block ends."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REDIS_PREFIX, REDIS_URL
from tests.e2e import sidecar_procs as procs


@dataclass
class Org:
    id: str
    admin: dict[str, str]  # the owner's Authorization header
    key: str  # the API key ci-bot
    agent: str
    email: str  # the owner's


@dataclass(frozen=True)
class Pod:
    envoy: str  # the URL callers use
    gateway_url: str  # the gateway itself, around Envoy
    gateway: Any  # the processes, for their logs
    sidecar: Any


def operator(control_plane: procs.ControlPlane, *args: str) -> str:
    """`kaizen-studio platform-gateway …` on the control plane's own settings; its output."""
    done = subprocess.run(
        [str(procs.BIN / "kaizen-studio"), "platform-gateway", *args],
        env=control_plane.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_platform_gateway(control_plane: procs.ControlPlane, name: str, url: str) -> str:
    """The operator creates the shared gateway reached at `url`; its platform credential."""
    said = operator(control_plane, "create", name, "--url", url)
    credential = said.split("KAIZEN_PLATFORM_TOKEN of its sidecars): ", 1)[1].strip()
    assert credential.startswith("kgp_"), said
    return credential


def wait_serving(
    port: int, process: subprocess.Popen[bytes], control_plane: str, credential: str, *orgs: Org
) -> None:
    """Until the sidecar or gateway on `port` serves every one of `orgs` at the newest
    revision the platform manifest names (its /healthz lists `organisation:revision`): an
    older one may lack the API key or deployment the test made last."""
    deadline = time.monotonic() + 30
    while True:
        manifest = httpx.get(
            f"{control_plane}/api/v1/platform/manifest",
            headers={"Authorization": f"Bearer {credential}"},
            timeout=5,
        ).json()
        newest = {o["organization"]: o["revision"] for o in manifest["organizations"]}
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
        except (httpx.TransportError, ValueError):
            health = {}
        served = set(str(health.get("bundle_revision")).split(","))
        if all(f"{org.id}:{newest.get(org.id)}" in served for org in orgs):
            return
        assert process.poll() is None, procs.output(process)
        assert time.monotonic() < deadline, f"not serving them all at {newest}: {health}"
        time.sleep(0.1)


@contextmanager
def serving_shared_pod(
    control_plane: str,
    credential: str,
    directory: Path,
    listen: int,
    envoy_admin: int,
    orgs: tuple[Org, ...],
    **gateway_env: str,
) -> Iterator[Pod]:
    """The pod of the platform gateway whose `credential` is given, Envoy on `listen` (the
    URL the gateway was created with), serving `orgs`; `gateway_env` are further settings
    of the gateway process. The sidecar keeps its counters in the test Redis."""
    gateway_port, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    environ = procs.clean_env(
        KAIZEN_HOME=str(directory / "gateway"),
        KAIZEN_GATEWAY_PORT=str(gateway_port),
        KAIZEN_GATEWAY_TOKEN=credential,  # the platform credential: shared mode
        KAIZEN_CONTROL_PLANE_URL=control_plane,
        KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_port}",
        **gateway_env,
    )
    with (
        procs.running(
            procs.spawn([str(procs.BIN / "kaizen-studio"), "gateway"], env=environ)
        ) as gateway,
        procs.running(
            procs.start_sidecar(
                directory / "sidecar",
                grpc_port,
                http_port,
                KAIZEN_PLATFORM_TOKEN=credential,
                KAIZEN_CONTROL_PLANE_URL=control_plane,
                KAIZEN_REDIS_URL=REDIS_URL,
                KAIZEN_REDIS_PREFIX=f"{REDIS_PREFIX}shared-{secrets.token_hex(3)}:",
                wait=False,
            )
        ) as sidecar,
        procs.running(
            procs.start_envoy(
                procs.envoy_config(
                    listen, envoy_admin, grpc_port, gateway_port, sidecar_http=http_port
                ),
                directory,
                envoy_admin,
            )
        ),
    ):
        wait_serving(http_port, sidecar, control_plane, credential, *orgs)
        wait_serving(gateway_port, gateway, control_plane, credential, *orgs)
        yield Pod(
            f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{gateway_port}", gateway, sidecar
        )
