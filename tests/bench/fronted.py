"""Sidecars behind their own Envoy, with bench_sidecar's decision, for the latency benches.

`start_run(stack, name)` sets up what a run shares, all undone with `stack`: a directory
with bench_sidecar's bundle (`BENCH_POLICY`) and JWKS, the bearer header its calls carry,
a Redis prefix whose keys are deleted afterwards, a control-plane stand-in (`stand_in`:
sidecars log and sign as in production) and the upstream. `start_fronted(...)` then starts
one sidecar (workers per core on Redis) and an Envoy in front of it over HTTP ext_authz.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.bench.bench_sidecar import (
    BENCH_POLICY,
    PATH,
    REDIS_URL,
    WORKERS,
    _forget,
    recycle_ext_authz_connections,
)
from tests.bench.stand_in import control_plane_env
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import access_token, make_bundle, make_keys

__all__ = ["BenchRun", "Fronted", "start_fronted", "start_run"]


@dataclass(frozen=True)
class BenchRun:
    tmp: Path  # the run's directory: bundle, JWKS, sidecar homes, Envoy configs
    headers: dict[str, str]  # the caller's bearer token, valid past the run
    redis_prefix: str
    production: dict[str, str]  # a sidecar's settings for the control-plane stand-in
    upstream: int  # the port of the upstream every Envoy forwards to


@dataclass(frozen=True)
class Fronted:
    sidecar: subprocess.Popen[bytes]
    via_envoy: str  # the call, through Envoy
    straight: str  # the same check, straight at the sidecar's /ext_authz


def start_run(stack: contextlib.ExitStack, name: str) -> BenchRun:
    tmp = Path(tempfile.mkdtemp(prefix=f"kaizen-bench-{name}-"))
    stack.callback(shutil.rmtree, tmp, True)
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys, policy=BENCH_POLICY))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    token = access_token(keys, exp=2_000_000_000)
    redis_prefix = f"kaizen-bench-{secrets.token_hex(4)}:"
    stack.callback(_forget, redis_prefix)
    production = control_plane_env(stack)
    upstream = procs.free_port()
    stack.enter_context(procs.running(procs.start_helper("upstream", upstream)))
    return BenchRun(tmp, {"Authorization": f"Bearer {token}"}, redis_prefix, production, upstream)


def start_fronted(stack: contextlib.ExitStack, run: BenchRun, name: str, **env: str) -> Fronted:
    """Sidecar `name` (its home under run.tmp), as in production, with `env` added or put
    in place of a default (a PYTHONPATH, a lease size, `KAIZEN_SIDECAR_WORKERS`...)."""
    grpc_port, http_port = procs.free_port(), procs.free_port()
    settings = {
        "KAIZEN_SIDECAR_BUNDLE": str(run.tmp / "bundle.tar.gz"),
        "KAIZEN_SIDECAR_JWKS": str(run.tmp / "jwks.json"),
        "KAIZEN_REDIS_URL": REDIS_URL,
        "KAIZEN_REDIS_PREFIX": run.redis_prefix,
        "KAIZEN_SIDECAR_WORKERS": str(WORKERS),
        **run.production,
        **env,
    }
    sidecar = procs.start_sidecar(
        run.tmp / name.replace(" ", "-"), grpc_port, http_port, **settings
    )
    stack.enter_context(procs.running(sidecar))
    listen, admin = procs.free_port(), procs.free_port()
    config = procs.envoy_config(
        listen, admin, grpc_port, run.upstream, sidecar_http=http_port, transport="http"
    )
    envoy = procs.start_envoy(recycle_ext_authz_connections(config), run.tmp, admin)
    stack.enter_context(procs.running(envoy))
    return Fronted(
        sidecar,
        f"http://127.0.0.1:{listen}{PATH}",
        f"http://127.0.0.1:{http_port}/ext_authz{PATH}",
    )
