"""The sidecar's cost through a real Envoy: `python -m tests.bench bench_sidecar`.

Three Envoy configurations in front of the same stand-in gateway, measured in one run:
(a) no ext_authz; (b) ext_authz to a no-op server that always says OK, built like ours
(grpc.aio, same worker count, SO_REUSEPORT); (c) our sidecar with a full decision: JWT,
RBAC, ABAC (Rego) and a budget reserved in Redis. Loads: 100 and 1,000 req/s (hey, fixed
rate) and saturation (wrk). Load generator, Envoy and servers share this machine's cores,
so compare the rows of one run, never numbers across runs or machines.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import POLICY, access_token, make_bundle, make_keys

DURATION = int(os.environ.get("KAIZEN_BENCH_SECONDS", "5"))
REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKERS = os.cpu_count() or 1
PATH = "/v1/agents/support-bot/invoke"
BENCH_POLICY = (
    POLICY
    + """\
    - {name: org-daily, scope: org, metric: executions, limit: 1000000000, period: day}
"""
)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _hey(url: str, token: str, rate: int) -> dict[str, float]:
    workers = max(1, min(50, rate // 20))
    load = ["-z", f"{DURATION}s", "-c", str(workers), "-q", str(rate / workers)]
    out = subprocess.run(
        ["hey", *load, "-m", "POST", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out)[1]) * 1000  # type: ignore[index]
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out)[1]) * 1000  # type: ignore[index]
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    bad = sum(int(n) for code, n in codes.items() if code != "200")
    return {"rps": rps, "p50": p50, "p99": p99, "errors": bad}


def _wrk(url: str, token: str, script_dir: Path) -> dict[str, float]:
    script = script_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "function response(status, headers, body)\n"
        '  if status ~= 200 then wrk.thread:set("bad", (wrk.thread:get("bad") or 0) + 1) end\n'
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{DURATION}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"\s{percent}%\s+([\d.]+)(us|ms|s)", out)
        return float(match[1]) * _UNITS[match[2]] if match else float("nan")

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": int(non2xx[1]) if non2xx else 0,
    }


def _measure(url: str, token: str, tmp: Path) -> dict[str, dict[str, float]]:
    results = {f"{rate} req/s": _hey(url, token, rate) for rate in (100, 1000)}
    results["saturation"] = _wrk(url, token, tmp)
    return results


def main() -> None:
    missing = [tool for tool in ("hey", "wrk") if shutil.which(tool) is None]
    if missing or procs.envoy_binary() is None:
        print(f"skipped: needs hey, wrk (apt-get install -y hey wrk) and envoy; missing {missing}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="kaizen-bench-sidecar-"))
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys, policy=BENCH_POLICY))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    token = access_token(keys, exp=2_000_000_000)
    upstream, ours, noop = procs.free_port(), procs.free_port(), procs.free_port()
    table: dict[str, dict[str, dict[str, float]]] = {}
    with (
        procs.running(procs.start_helper("upstream", upstream)),
        procs.running(procs.start_helper("noop", noop, str(WORKERS))),
        procs.running(
            procs.start_sidecar(
                tmp / "home",
                ours,
                procs.free_port(),
                KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
                KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                KAIZEN_REDIS_URL=REDIS_URL,
                KAIZEN_REDIS_PREFIX=f"kaizen-bench-{secrets.token_hex(4)}:",
                KAIZEN_SIDECAR_WORKERS=str(WORKERS),
            )
        ),
    ):
        for name, grpc_port, ext_authz in (
            ("(a) no ext_authz", ours, False),
            ("(b) no-op ext_authz", noop, True),
            ("(c) kaizen sidecar", ours, True),
        ):
            listen, admin = procs.free_port(), procs.free_port()
            config = procs.envoy_config(listen, admin, grpc_port, upstream, ext_authz=ext_authz)
            with procs.running(procs.start_envoy(config, tmp, admin)):
                url = f"http://127.0.0.1:{listen}{PATH}"
                print(f"measuring {name} ...", flush=True)
                table[name] = _measure(url, token, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    _print(table)


def _print(table: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\n{WORKERS} worker(s) per ext_authz server; {DURATION} s per cell; Envoy 2 threads")
    print(f"{'config':<22} {'load':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}")
    for name, rows in table.items():
        for load, row in rows.items():
            print(
                f"{name:<22} {load:<12} {row['rps']:>9.0f} {row['p50']:>8.2f} "
                f"{row['p99']:>8.2f} {row['errors']:>8.0f}"
            )
    base, noop, ours = (table[k]["saturation"] for k in table)
    print(
        f"\nsaturation throughput: sidecar/no-op = {ours['rps'] / noop['rps']:.2f}, "
        f"sidecar/no-ext_authz = {ours['rps'] / base['rps']:.2f}, "
        f"no-op/no-ext_authz = {noop['rps'] / base['rps']:.2f}"
    )
    for load in ("100 req/s", "1000 req/s"):
        extra = table["(c) kaizen sidecar"][load]["p50"] - table["(b) no-op ext_authz"][load]["p50"]
        print(f"p50 added by a full decision over a no-op check at {load}: {extra:+.2f} ms")


if __name__ == "__main__":
    main()
