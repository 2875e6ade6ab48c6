"""This checkout's sidecar against another's, through Envoy: `python -m tests.bench
bench_sidecar_ab` with `KAIZEN_BENCH_BASE=DIR` (a checkout, e.g. `git worktree add
/tmp/base main`; without it the bench is skipped).

bench_sidecar's row (e) twice, the sidecar run from `DIR` (the baseline) and from this
checkout, each behind its own Envoy in front of one upstream, beside (a) Envoy without
ext_authz. Evenly spaced requests at 100 and 1,000 req/s (`tests/bench/paced.py`),
`KAIZEN_BENCH_ROUNDS` rounds (default 5) in which the three take turns; per round: p50
and p99 over (a) and the sidecar's CPU per check (`/proc`, its processes). Prints the
medians, each round's pair, and this ÷ base. For a change to the check path whose effect
is smaller than one run's spread: the pairs show whether it holds round after round.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics

from tests.bench.bench_check_cpu import cpu_seconds
from tests.bench.bench_sidecar import PATH, WORKERS
from tests.bench.fronted import start_fronted, start_run
from tests.bench.paced import paced
from tests.e2e import sidecar_procs as procs

BASE = os.environ.get("KAIZEN_BENCH_BASE")
ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("KAIZEN_BENCH_SECONDS", "6"))
RATES = (100, 1000)
SIDECARS = ("base", "this")

Row = dict[str, float]


def main() -> None:
    if not BASE:
        print("skipped: set KAIZEN_BENCH_BASE to the checkout to compare with")
        return
    if shutil.which("hey") is None or procs.envoy_binary() is None:
        print("skipped: needs hey (apt-get install -y hey) and envoy")
        return
    rows: dict[tuple[str, int], list[Row]] = {}
    with contextlib.ExitStack() as stack:
        run = start_run(stack, "ab")
        headers = run.headers
        listen, admin = procs.free_port(), procs.free_port()
        bare = procs.envoy_config(
            listen, admin, procs.free_port(), run.upstream, transport="http", ext_authz=False
        )
        stack.enter_context(procs.running(procs.start_envoy(bare, run.tmp, admin)))
        targets: dict[str, tuple[str, int | None]] = {
            "(a)": (f"http://127.0.0.1:{listen}{PATH}", None)
        }
        for name in SIDECARS:
            env = {"PYTHONPATH": BASE} if name == "base" else {}
            fronted = start_fronted(stack, run, name, **env)
            targets[name] = (fronted.via_envoy, fronted.sidecar.pid)
        for url, _ in targets.values():  # connections up, leases taken
            paced(url, headers, 100, 1)
        for round_ in range(ROUNDS):
            for rate in RATES:
                for name, (url, pid) in targets.items():
                    print(f"round {round_ + 1}/{ROUNDS}: {name} at {rate} req/s ...", flush=True)
                    before = cpu_seconds(pid) if pid else 0.0
                    row = paced(url, headers, rate, SECONDS)
                    spent = cpu_seconds(pid) - before if pid else 0.0
                    row["cpu_us"] = spent / max(1.0, row["rps"] * SECONDS) * 1e6
                    rows.setdefault((name, rate), []).append(row)
    _print(rows)


def _print(rows: dict[tuple[str, int], list[Row]]) -> None:
    print(f"\nthrough Envoy, {WORKERS} worker(s), {SECONDS} s per cell, {ROUNDS} rounds in turn")
    print(f"base: {BASE}")
    for rate in RATES:
        bare = rows[("(a)", rate)]
        print(f"\n{rate} req/s (errors: {sum(r['errors'] for row in rows.values() for r in row)})")
        print(f"  {'':6} {'p50 over (a)':>13} {'p99 over (a)':>13} {'CPU µs/check':>13}")
        added: dict[str, dict[str, list[float]]] = {}
        for name in SIDECARS:
            ours = rows[(name, rate)]
            added[name] = {
                field: [o[field] - a[field] for o, a in zip(ours, bare, strict=True)]
                for field in ("p50", "p99")
            }
            added[name]["cpu_us"] = [o["cpu_us"] for o in ours]
            medians = [statistics.median(added[name][f]) for f in ("p50", "p99", "cpu_us")]
            print(f"  {name:6} {medians[0]:+13.2f} {medians[1]:+13.2f} {medians[2]:13.0f}")
        for field in ("p50", "p99", "cpu_us"):
            pairs = list(zip(added["base"][field], added["this"][field], strict=True))
            digits = 0 if field == "cpu_us" else 2
            shown = "  ".join(f"{b:.{digits}f}→{t:.{digits}f}" for b, t in pairs)
            lower = sum(t < b for b, t in pairs)
            print(f"  {field} by round (base→this): {shown}; this lower in {lower}/{ROUNDS}")
        cpu = statistics.median(added["this"]["cpu_us"]) / statistics.median(
            added["base"]["cpu_us"]
        )
        print(f"  CPU per check, this ÷ base: {cpu:.2f}")
