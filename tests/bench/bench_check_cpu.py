"""CPU per check, the figure M9 sets a goal for (~100 µs): `python -m tests.bench bench_check_cpu`.

One worker each, `wrk -t1 -c16` straight at `/ext_authz/...` (no Envoy), and the CPU the
server's processes spent (utime + stime from /proc, the worker and its supervisor) divided
by the requests they answered. Rows, taking turns in each round:

(n) the no-op HTTP ext_authz server (same protocol server, answers 200 at once): the floor;
(r) our sidecar with an RBAC-only bundle (JWT verified, roles from the bundle, logged);
(f) our sidecar with the full benchmark decision of bench_sidecar (JWT, RBAC, Rego, an org
    budget reserved in Redis, the decision logged, the signed decision header);
    every sidecar row runs as in production, with a gateway credential and a control plane
    (`stand_in`): without one a sidecar neither logs nor signs (before 2026-12-04 these rows
    ran without, and so measured neither);
(t) (f) with traces on (OTEL_TRACES_EXPORTER=otlp, every check sampled: wrk sends no trace
    context; exported to `sidecar_procs otlp-sink`): (t) - (f) is what a traced check costs,
    the exporter's thread included (ADR 0013);
(b) only with `KAIZEN_BENCH_BASE=DIR`: (f) run from another checkout (e.g. a worktree of
    `main`), for a before/after of a change in one interleaved run.

CPU time, unlike throughput, hardly moves when another process shares the machine, so this
is the figure to compare before and after a change to the check path; (f) - (n) is what
our decision costs over the HTTP server it runs on.
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

import httpx

from tests.bench.bench_cerbos import RBAC_ONLY_POLICY, start_bundle_sidecar, wrk_run
from tests.bench.bench_sidecar import BENCH_POLICY, _forget
from tests.bench.stand_in import control_plane_env
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import access_token, make_keys

DURATION = int(os.environ.get("KAIZEN_BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "3"))
PATH = "/ext_authz/v1/agents/support-bot/invoke"
TICKS = os.sysconf("SC_CLK_TCK")
BASE = os.environ.get("KAIZEN_BENCH_BASE")
ROWS = (
    "(n) no-op HTTP",
    "(r) sidecar RBAC",
    "(f) sidecar full",
    "(t) sidecar full, traced",
    *(("(b) sidecar full, base",) if BASE else ()),
)


def _tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(root: int) -> float:
    """utime + stime of `root` and its live descendants."""
    total = 0
    for pid in _tree(root):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _measure(pid: int, url: str, script: Path) -> dict[str, float]:
    before = cpu_seconds(pid)
    result = wrk_run(url, script, threads=1, connections=16, seconds=DURATION)
    spent = cpu_seconds(pid) - before
    requests = result["requests"]
    return {**result, "cpu_us": spent / max(1, requests) * 1e6}


def main() -> None:
    if shutil.which("wrk") is None:
        print("skipped: needs wrk (apt-get install -y wrk)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="kaizen-bench-cpu-"))
    keys = make_keys()
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks))
    bearer = f"Bearer {access_token(keys, exp=2_000_000_000)}"
    script = tmp / "check.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Authorization"] = "{bearer}"\n')
    rounds: dict[str, list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        noop_port = procs.free_port()
        noop = stack.enter_context(procs.running(procs.start_helper("noop-http", noop_port, "1")))
        prefix = f"kaizen-bench-{secrets.token_hex(4)}:"
        stack.callback(_forget, prefix)
        targets = {ROWS[0]: (noop.pid, f"http://127.0.0.1:{noop_port}{PATH}")}
        sink = procs.free_port()
        stack.enter_context(procs.running(procs.start_helper("otlp-sink", sink)))
        traced = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}",
        }
        setups: list[tuple[str, str, dict[str, str]]] = [
            (ROWS[1], RBAC_ONLY_POLICY, {}),
            (ROWS[2], BENCH_POLICY, {}),
            (ROWS[3], BENCH_POLICY, traced),
        ]
        if BASE:
            setups.append((ROWS[4], BENCH_POLICY, {"PYTHONPATH": BASE}))
        production = control_plane_env(stack)
        for row, policy, env in setups:
            sidecar, url = start_bundle_sidecar(
                stack, tmp, keys, row[1], policy, prefix, 1, **production, **env
            )
            status = httpx.post(url, headers={"Authorization": bearer}).status_code
            if status != 200:  # the positive control: every row measures an allow
                raise RuntimeError(f"{row} answered {status}, not an allow")
            targets[row] = (sidecar.pid, url)
        for round_ in range(ROUNDS):
            for row in ROWS:
                print(f"round {round_ + 1}/{ROUNDS}: {row} ...", flush=True)
                rounds.setdefault(row, []).append(_measure(*targets[row], script))
    _print(rounds)


def _print(rounds: dict[str, list[dict[str, float]]]) -> None:
    def median(row: str, field: str) -> float:
        return statistics.median(r[field] for r in rounds[row])

    print(
        f"\nCPU per check, one worker, wrk -t1 -c16 direct, {DURATION} s per cell, "
        f"median of {ROUNDS} interleaved rounds"
    )
    print(f"{'row':<20} {'µs CPU/check':>13} {'checks/s':>9} {'non-200':>8}")
    for row in ROWS:
        print(
            f"{row:<20} {median(row, 'cpu_us'):>13.0f} {median(row, 'rps'):>9.0f} "
            f"{sum(r['errors'] for r in rounds[row]):>8.0f}"
        )
    floor = median(ROWS[0], "cpu_us")
    full = median(ROWS[2], "cpu_us")
    print(f"\n(f) - (n), our decision over the HTTP server: {full - floor:.0f} µs")
    print(f"(f) ÷ (n) = {full / floor:.2f}   goal: (f) ≈ 100 µs CPU per check")
    traced = median(ROWS[3], "cpu_us")
    print(f"(t) - (f), a check traced and exported: {traced - full:+.0f} µs")
    print(f"(t) ÷ (f) = {traced / full:.2f}")
    if BASE:
        base = median(ROWS[4], "cpu_us")
        print(f"(f) - (b), this checkout over {BASE}: {full - base:+.0f} µs")


if __name__ == "__main__":
    main()
