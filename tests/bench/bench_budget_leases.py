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
import os
import shutil
import statistics

from tests.bench.bench_sidecar import WORKERS
from tests.bench.fronted import start_fronted, start_run
from tests.bench.paced import paced
from tests.e2e import sidecar_procs as procs

ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("KAIZEN_BENCH_SECONDS", "6"))
RATES = (100, 1000)
SIDECARS = (("leases off", "0"), ("leases on", "64"))


def main() -> None:
    if shutil.which("hey") is None or procs.envoy_binary() is None:
        print("skipped: needs hey (apt-get install -y hey) and envoy")
        return
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        run = start_run(stack, "leases")
        urls: dict[str, str] = {}
        for name, lease_calls in SIDECARS:
            fronted = start_fronted(stack, run, name, KAIZEN_SIDECAR_BUDGET_LEASE_CALLS=lease_calls)
            urls[f"{name}, straight"] = fronted.straight
            urls[f"{name}, via Envoy"] = fronted.via_envoy
        for round_ in range(ROUNDS):
            for rate in RATES:
                for name, url in urls.items():
                    print(f"round {round_ + 1}/{ROUNDS}: {name} at {rate} req/s ...", flush=True)
                    rows.setdefault((name, rate), []).append(paced(url, run.headers, rate, SECONDS))
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
