"""The sidecar's cost through a real Envoy: `python -m tests.bench bench_sidecar`.

Six Envoy configurations in front of the same stand-in gateway, measured in one run:
(a) no ext_authz; (b) gRPC ext_authz to a no-op server that always says OK, built like
ours (grpc.aio, same worker count, SO_REUSEPORT); (c) our sidecar over gRPC with a full
decision: JWT, RBAC, ABAC (Rego), a budget reserved in Redis, the decision logged and the
signed decision header (a gateway credential and a control-plane stand-in, `stand_in`:
before 2026-12-04 the sidecars ran without, so neither logged nor signed); (d) HTTP ext_authz
(http_service) to a no-op built like ours (the uvloop + httptools protocol server of
authz_sidecar/http_protocol.py, same workers); (e) our sidecar over HTTP (/ext_authz, the
default transport), same decision as (c); (f) (e) with traces on (ADR 0013: every check
sampled and exported over OTLP/HTTP to a sink that drops it; the traced/untraced ratio is
what traces cost at the worst sampling rate; with traces off the sidecar serves (e)).
Loads: 100 and 1,000 req/s (hey, one connection per process and the processes' ticks
interleaved, `tests/bench/paced.py`: evenly spaced requests; before 2026-12-04 evening one
hey with 5 or 50 workers sent them in bursts of 5 or 50, and the percentiles measured the
bursts' queues) and saturation (wrk), `KAIZEN_BENCH_ROUNDS`
rounds (default 2) in which the configurations take turns at each load, so background load
on a shared machine falls on all alike; the table shows medians. Load generator, Envoy and
servers share this machine's cores, so compare the rows of one run, never numbers across
runs or machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import redis
import yaml

from tests.bench.paced import paced
from tests.bench.stand_in import control_plane_env
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import POLICY, access_token, make_bundle, make_keys

DURATION = int(os.environ.get("KAIZEN_BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "2"))
RECYCLE_AFTER_REQUESTS = 2000
REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Workers per ext_authz server: one per core unless KAIZEN_BENCH_WORKERS says otherwise.
WORKERS = int(os.environ.get("KAIZEN_BENCH_WORKERS", "0")) or os.cpu_count() or 1
PATH = "/v1/agents/support-bot/invoke"
BENCH_POLICY = (
    POLICY
    + """\
    - {name: org-daily, scope: org, metric: executions, limit: 1000000000, period: day}
"""
)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


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


CONFIGS = (
    "(a) no ext_authz",
    "(b) no-op gRPC",
    "(c) sidecar gRPC",
    "(d) no-op HTTP",
    "(e) sidecar HTTP",
    "(f) sidecar HTTP, traced",
)
# name -> (transport, which server answers the checks); (a) has no ext_authz filter.
_SERVERS = {
    CONFIGS[0]: ("grpc", None),
    CONFIGS[1]: ("grpc", "noop"),
    CONFIGS[2]: ("grpc", "ours"),
    CONFIGS[3]: ("http", "noop"),
    CONFIGS[4]: ("http", "ours"),
    CONFIGS[5]: ("http", "traced"),
}
LOADS = ("100 req/s", "1000 req/s", "saturation")


def recycle_ext_authz_connections(config: str) -> str:
    """Envoy keeps one HTTP/2 connection per thread to the ext_authz cluster, and the kernel
    hands each connection to one worker (SO_REUSEPORT), so with two connections both land
    on one worker half the time. Recycling them every few thousand requests evens that out
    over a run (see authz_sidecar/README.md "Performance"); the same for every config
    (HTTP/1.1 keeps several connections, recycled alike)."""
    data = yaml.safe_load(config)
    for cluster in data["static_resources"]["clusters"]:
        options = cluster.get("typed_extension_protocol_options", {})
        http = options.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        if http is not None and cluster["name"] == "kaizen_sidecar":
            common = http.setdefault("common_http_protocol_options", {})
            common["max_requests_per_connection"] = RECYCLE_AFTER_REQUESTS
    return yaml.safe_dump(data)


def _measure(url: str, token: str, load: str, tmp: Path) -> dict[str, float]:
    if load == "saturation":
        return _wrk(url, token, tmp)
    return paced(url, {"Authorization": f"Bearer {token}"}, int(load.split()[0]), DURATION)


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
    ours_http, noop_http = procs.free_port(), procs.free_port()
    traced, traced_http, sink = procs.free_port(), procs.free_port(), procs.free_port()
    # (config, load) -> one row per round; the configurations take turns within a round,
    # so a neighbour's load on this shared machine hits all three alike.
    rounds: dict[tuple[str, str], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(procs.running(procs.start_helper("upstream", upstream)))
        stack.enter_context(procs.running(procs.start_helper("noop", noop, str(WORKERS))))
        stack.enter_context(procs.running(procs.start_helper("noop-http", noop_http, str(WORKERS))))
        prefix = f"kaizen-bench-{secrets.token_hex(4)}:"
        stack.callback(_forget, prefix)
        production = control_plane_env(stack)  # logs and signs, as in production
        sidecar = procs.start_sidecar(
            tmp / "home",
            ours,
            ours_http,
            KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
            KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
            KAIZEN_REDIS_URL=REDIS_URL,
            KAIZEN_REDIS_PREFIX=prefix,
            KAIZEN_SIDECAR_WORKERS=str(WORKERS),
            **production,
        )
        stack.enter_context(procs.running(sidecar))
        # (f): the same sidecar with traces on, every check sampled (no caller context, the
        # default parent-based always-on sampler) and exported over OTLP/HTTP to a sink.
        stack.enter_context(procs.running(procs.start_helper("otlp-sink", sink)))
        stack.enter_context(
            procs.running(
                procs.start_sidecar(
                    tmp / "home-traced",
                    traced,
                    traced_http,
                    KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
                    KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                    KAIZEN_REDIS_URL=REDIS_URL,
                    KAIZEN_REDIS_PREFIX=prefix,
                    KAIZEN_SIDECAR_WORKERS=str(WORKERS),
                    **production,
                    OTEL_TRACES_EXPORTER="otlp",
                    OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{sink}",
                )
            )
        )
        urls = {}
        ports = {
            "ours": (ours, ours_http),
            "noop": (noop, noop_http),
            "traced": (traced, traced_http),
        }
        for name in CONFIGS:
            transport, server = _SERVERS[name]
            grpc_port, http_port = ports[server or "ours"]
            listen, admin = procs.free_port(), procs.free_port()
            config = procs.envoy_config(
                listen,
                admin,
                grpc_port,
                upstream,
                sidecar_http=http_port,
                transport=transport,
                ext_authz=server is not None,
            )
            config = recycle_ext_authz_connections(config)
            stack.enter_context(procs.running(procs.start_envoy(config, tmp, admin)))
            urls[name] = f"http://127.0.0.1:{listen}{PATH}"
        for round_ in range(ROUNDS):
            for load in LOADS:
                for name in CONFIGS:
                    print(f"round {round_ + 1}/{ROUNDS}: {name} at {load} ...", flush=True)
                    row = _measure(urls[name], token, load, tmp)
                    rounds.setdefault((name, load), []).append(row)
    shutil.rmtree(tmp, ignore_errors=True)
    _print(rounds)


def _forget(prefix: str) -> None:
    """Delete the run's counters and reservation records (one per allowed call, 1 h TTL):
    a shared Redis full of them slows every test that scans it."""
    client = redis.Redis.from_url(REDIS_URL)
    batch = []
    for key in client.scan_iter(f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)
    client.close()


def _median(rows: list[dict[str, float]], field: str) -> float:
    return statistics.median(row[field] for row in rows)


def _print(rounds: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    print(
        f"\n{WORKERS} worker(s) per ext_authz server; {DURATION} s per cell; Envoy 2 threads; "
        f"median of {ROUNDS} interleaved round(s) (errors: sum)"
    )
    print(f"{'config':<22} {'load':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}")
    for name in CONFIGS:
        for load in LOADS:
            rows = rounds[(name, load)]
            print(
                f"{name:<22} {load:<12} {_median(rows, 'rps'):>9.0f} "
                f"{_median(rows, 'p50'):>8.2f} {_median(rows, 'p99'):>8.2f} "
                f"{sum(row['errors'] for row in rows):>8.0f}"
            )
    saturation = {name: rounds[(name, "saturation")] for name in CONFIGS}
    base = _median(saturation[CONFIGS[0]], "rps")

    def ratio(ours: str, theirs: str) -> str:
        per_round = [
            o["rps"] / t["rps"] for o, t in zip(saturation[ours], saturation[theirs], strict=True)
        ]
        return (
            f"{statistics.median(per_round):.2f} "
            f"(rounds: {', '.join(f'{r:.2f}' for r in per_round)})"
        )

    print("\nsaturation throughput (M9's goals beside them):")
    print(f"  (e)/(d) sidecar/no-op over HTTP = {ratio(CONFIGS[4], CONFIGS[3])}; goal >= 0.60")
    print(f"  (e)/(c) sidecar HTTP/sidecar gRPC = {ratio(CONFIGS[4], CONFIGS[2])}; goal >= 5")
    print(f"  (c)/(b) sidecar/no-op over gRPC = {ratio(CONFIGS[2], CONFIGS[1])}; M3's goal >= 0.60")
    print(f"  (d)/(b) no-op HTTP/no-op gRPC = {ratio(CONFIGS[3], CONFIGS[1])}")
    print(f"  (f)/(e) sidecar HTTP traced/untraced = {ratio(CONFIGS[5], CONFIGS[4])}")
    for name in CONFIGS[1:]:
        print(f"  {name}/no ext_authz = {_median(saturation[name], 'rps') / base:.2f}")
    for load, field, goal in (("100 req/s", "p50", 1), ("1000 req/s", "p99", 5)):
        a = rounds[(CONFIGS[0], load)]
        deltas = ", ".join(
            f"{name[:3]} {_median(rounds[(name, load)], field) - _median(a, field):+.2f}"
            for name in CONFIGS[1:]
        )
        print(f"at {load}: {field} minus (a), ms: {deltas} (goal for (e): <= +{goal})")
        ours = rounds[(CONFIGS[4], load)]  # (e), round by round: the spread behind its median
        spread = ", ".join(f"{o[field] - b[field]:+.2f}" for o, b in zip(ours, a, strict=True))
        print(f"  (e) round by round: {spread}")


if __name__ == "__main__":
    main()
