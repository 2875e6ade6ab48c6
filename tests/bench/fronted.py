"""Sidecars behind their own Envoy, with bench_sidecar's decision, for the latency benches.

`bench_files()` writes bench_sidecar's bundle (`BENCH_POLICY`) and JWKS and gives the
bearer header its calls carry; `start_fronted(...)` starts one sidecar as in production
(workers per core on Redis, a gateway credential: logged and signed) and an Envoy in front
of it over HTTP ext_authz, both stopped with `stack`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bench.bench_sidecar import (
    BENCH_POLICY,
    PATH,
    REDIS_URL,
    WORKERS,
    recycle_ext_authz_connections,
)
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import access_token, make_bundle, make_keys

__all__ = ["BenchFiles", "Fronted", "bench_files", "start_fronted"]


@dataclass(frozen=True)
class BenchFiles:
    tmp: Path  # the run's directory: bundle, JWKS, sidecar homes, Envoy configs
    headers: dict[str, str]  # the caller's bearer token, valid past the run


@dataclass(frozen=True)
class Fronted:
    sidecar: subprocess.Popen[bytes]
    via_envoy: str  # the call, through Envoy
    straight: str  # the same check, straight at the sidecar's /ext_authz


def bench_files(prefix: str) -> BenchFiles:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys, policy=BENCH_POLICY))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    token = access_token(keys, exp=2_000_000_000)
    return BenchFiles(tmp, {"Authorization": f"Bearer {token}"})


def start_fronted(
    stack: contextlib.ExitStack,
    files: BenchFiles,
    name: str,
    upstream: int,
    redis_prefix: str,
    **env: str,
) -> Fronted:
    """Sidecar `name` (its home under files.tmp) with `env` added (the production
    settings of `stand_in.control_plane_env`, a PYTHONPATH, a lease size...)."""
    grpc_port, http_port = procs.free_port(), procs.free_port()
    sidecar = procs.start_sidecar(
        files.tmp / name.replace(" ", "-"),
        grpc_port,
        http_port,
        KAIZEN_SIDECAR_BUNDLE=str(files.tmp / "bundle.tar.gz"),
        KAIZEN_SIDECAR_JWKS=str(files.tmp / "jwks.json"),
        KAIZEN_REDIS_URL=REDIS_URL,
        KAIZEN_REDIS_PREFIX=redis_prefix,
        KAIZEN_SIDECAR_WORKERS=str(WORKERS),
        **env,
    )
    stack.enter_context(procs.running(sidecar))
    listen, admin = procs.free_port(), procs.free_port()
    config = procs.envoy_config(
        listen, admin, grpc_port, upstream, sidecar_http=http_port, transport="http"
    )
    envoy = procs.start_envoy(recycle_ext_authz_connections(config), files.tmp, admin)
    stack.enter_context(procs.running(envoy))
    return Fronted(
        sidecar,
        f"http://127.0.0.1:{listen}{PATH}",
        f"http://127.0.0.1:{http_port}/ext_authz{PATH}",
    )
