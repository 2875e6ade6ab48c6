"""Budget leases on against off (ADR 0015): `python -m tests.bench bench_budget_leases`.

The same sidecar (bench_sidecar's full decision: JWT, RBAC, Rego, an org budget in Redis,
logged and signed) twice, `KAIZEN_SIDECAR_BUDGET_LEASE_CALLS=0` (every reservation waits
for Redis, the baseline) and the default (served from a lease), each straight at its HTTP
port and through its own Envoy. Evenly spaced requests at 100 and 1,000 req/s
(`tests/bench/paced.py`), `KAIZEN_BENCH_ROUNDS` rounds (default 3) in which the four take
turns, medians; the ratio printed is on ÷ off.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import statistics
import tempfile
from pathlib import Path

from tests.bench.bench_sidecar import (
    BENCH_POLICY,
    PATH,
    REDIS_URL,
    WORKERS,
    _forget,
    recycle_ext_authz_connections,
)
from tests.bench.paced import paced
from tests.bench.stand_in import control_plane_env
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import access_token, make_bundle, make_keys

ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("KAIZEN_BENCH_SECONDS", "6"))
RATES = (100, 1000)
SIDECARS = (("leases off", "0"), ("leases on", "64"))


def main() -> None:
    if shutil.which("hey") is None or procs.envoy_binary() is None:
        print("skipped: needs hey (apt-get install -y hey) and envoy")
        return
    tmp = Path(tempfile.mkdtemp(prefix="kaizen-bench-leases-"))
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys, policy=BENCH_POLICY))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    headers = {"Authorization": f"Bearer {access_token(keys, exp=2_000_000_000)}"}
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        prefix = f"kaizen-bench-{secrets.token_hex(4)}:"
        stack.callback(_forget, prefix)
        production = control_plane_env(stack)
        upstream = procs.free_port()
        stack.enter_context(procs.running(procs.start_helper("upstream", upstream)))
        urls: dict[str, str] = {}
        for name, lease_calls in SIDECARS:
            grpc_port, http_port = procs.free_port(), procs.free_port()
            sidecar = procs.start_sidecar(
                tmp / name.replace(" ", "-"),
                grpc_port,
                http_port,
                KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
                KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                KAIZEN_REDIS_URL=REDIS_URL,
                KAIZEN_REDIS_PREFIX=prefix,
                KAIZEN_SIDECAR_WORKERS=str(WORKERS),
                KAIZEN_SIDECAR_BUDGET_LEASE_CALLS=lease_calls,
                **production,
            )
            stack.enter_context(procs.running(sidecar))
            listen, admin = procs.free_port(), procs.free_port()
            config = procs.envoy_config(
                listen, admin, grpc_port, upstream, sidecar_http=http_port, transport="http"
            )
            envoy = procs.start_envoy(recycle_ext_authz_connections(config), tmp, admin)
            stack.enter_context(procs.running(envoy))
            urls[f"{name}, straight"] = f"http://127.0.0.1:{http_port}/ext_authz{PATH}"
            urls[f"{name}, via Envoy"] = f"http://127.0.0.1:{listen}{PATH}"
        for round_ in range(ROUNDS):
            for rate in RATES:
                for name, url in urls.items():
                    print(f"round {round_ + 1}/{ROUNDS}: {name} at {rate} req/s ...", flush=True)
                    rows.setdefault((name, rate), []).append(paced(url, headers, rate, SECONDS))
    shutil.rmtree(tmp, ignore_errors=True)
    _print(rows)


def _print(rows: dict[tuple[str, int], list[dict[str, float]]]) -> None:
    def median(name: str, rate: int, field: str) -> float:
        return statistics.median(row[field] for row in rows[(name, rate)])

    print(f"\n{WORKERS} worker(s); {SECONDS} s per cell; medians of {ROUNDS} round(s)")
    print(f"{'sidecar':<26} {'load':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'non-200':>8}")
    for name, rate in rows:
        errors = sum(row["errors"] for row in rows[(name, rate)])
        print(
            f"{name:<26} {rate:>9} {median(name, rate, 'rps'):>7.0f} "
            f"{median(name, rate, 'p50'):>7.2f} {median(name, rate, 'p99'):>7.2f} {errors:>8.0f}"
        )
    print("\nleases on ÷ off (lower is better):")
    for path in ("straight", "via Envoy"):
        for rate in RATES:
            on, off = f"leases on, {path}", f"leases off, {path}"
            ratios = [median(on, rate, f) / median(off, rate, f) for f in ("p50", "p99")]
            print(f"  {path:<10} {rate:>5} req/s: p50 {ratios[0]:.2f}, p99 {ratios[1]:.2f}")


if __name__ == "__main__":
    main()
