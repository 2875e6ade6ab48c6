"""A gateway pod serving one deployed agent, for the connector end-to-end tests: the gateway
registered and the agent deployed through the API, then `kaizen-studio gateway` (secrets in
OpenBao), `kaizen-studio sidecar` and Envoy started, and waited for until the gateway serves
the agent. Everything it starts stops when the `with` block ends."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e import sidecar_procs as procs

# The loopback network the tests' databases, emulators and fake LLM listen on.
LOCAL = "127.0.0.1/32"


@dataclass(frozen=True)
class VaultControlPlane:
    """The connector tests' control plane (tests/e2e/conftest.py `vault_control_plane`)."""

    process: procs.ControlPlane
    prefix: str  # KAIZEN_VAULT_PATH_PREFIX: the gateways reading its secrets take it too
    vault: dict[str, str]  # VAULT_ADDR and VAULT_TOKEN (the root token)


@dataclass(frozen=True)
class Pod:
    envoy: str  # the URL callers use
    token: str  # the gateway credential (reads the organisation's bundle)
    gateway: Any  # the processes, for their logs
    sidecar: Any


def bundle_files(content: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(content))) as archive:
        return {
            m.name.lstrip("/"): archive.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        }


@contextmanager
def serving_pod(
    call: Callable[..., httpx.Response],
    control_plane_url: str,
    tmp_path: Path,
    *,
    agent: str,
    organization_id: str,
    vault: dict[str, str],
    vault_prefix: str,
) -> Iterator[Pod]:
    """`call(method, path, json=...)` is the owner's API client."""
    listen, admin_port, grpc_port, http_port, gateway_port = (procs.free_port() for _ in range(5))
    envoy = f"http://127.0.0.1:{listen}"
    gateway = call(
        "POST", "/api/v1/gateways", json={"name": "edge", "environment": "prod", "url": envoy}
    )
    assert gateway.status_code == 201, gateway.text
    credential = {
        "KAIZEN_GATEWAY_TOKEN": gateway.json()["credential"],
        "KAIZEN_CONTROL_PLANE_URL": control_plane_url,
        "KAIZEN_LOG_LEVEL": "DEBUG",
    }
    deployed = call(
        "POST",
        "/api/v1/deployments",
        json={"gateway_id": gateway.json()["id"], "kind": "agent", "name": agent},
    )
    assert deployed.status_code == 201, deployed.text

    gateway_process = procs.spawn(
        [str(procs.BIN / "kaizen-studio"), "gateway"],
        env=procs.clean_env(
            KAIZEN_HOME=str(tmp_path / "gateway"),
            KAIZEN_GATEWAY_PORT=str(gateway_port),
            KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_port}",
            KAIZEN_GATEWAY_PUBLIC_URL=envoy,
            KAIZEN_OUTBOUND_ALLOW_CIDRS=LOCAL,
            KAIZEN_SECRETS_BACKEND="vault",
            KAIZEN_VAULT_PATH_PREFIX=vault_prefix,
            KAIZEN_GATEWAY_ORGANIZATION_ID=organization_id,
            **vault,
            **credential,
        ),
    )
    sidecar = procs.start_sidecar(tmp_path / "sidecar", grpc_port, http_port, **credential)
    proxy = procs.start_envoy(
        procs.envoy_config(listen, admin_port, grpc_port, gateway_port, sidecar_http=http_port),
        tmp_path,
        admin_port,
    )
    with procs.running(gateway_process), procs.running(sidecar), procs.running(proxy):

        def serving() -> bool:
            try:
                health = httpx.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=2)
            except httpx.TransportError:
                return False
            return health.status_code == 200 and health.json().get("agents") == 1

        procs.eventually(serving, 30, f"the gateway serving {agent}")
        yield Pod(envoy, credential["KAIZEN_GATEWAY_TOKEN"], gateway_process, sidecar)
