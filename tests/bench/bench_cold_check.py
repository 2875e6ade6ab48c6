"""The check warm and after an idle spell: `python -m tests.bench bench_cold_check`.

At 100 req/s a sidecar worker sleeps ~10 ms between checks, and on our VMs a thread that
has slept finds its caches cold: the same work then takes several times as long. That,
not the decision's warm cost, is most of M9's added p50 at 100 req/s. This bench measures
it in one process, without HTTP parsing, Envoy or a load generator in the way:

- (r) a reference of plain Python (a 200-entry dict built and summed);
- (h) one HMAC-SHA256 (OpenSSL), as the signed decision header needs;
- (k) the sidecar's whole HTTP check handler (`SidecarHttp.handle` and the answer's
  encoding), on uvloop as in the sidecar, with bench_sidecar's decision: JWT (cached),
  RBAC, ABAC in Rego (cached), an org budget served from a lease in Redis (ADR 0015),
  the signed decision header, the decision record appended to a real decision log.

Each is timed one call at a time, back to back ("warm"), then each call after the event
loop has slept `KAIZEN_BENCH_IDLE_MS` (default 10: the gap at 100 req/s). Medians of
`KAIZEN_BENCH_SAMPLES` calls (default 400), `KAIZEN_BENCH_ROUNDS` rounds (default 3)
taken in turn; the ratio printed is after-idle ÷ warm, the baseline being warm in the
same run. Needs Redis (KAIZEN_TEST_REDIS_URL).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budget_leases import LeasedBudgets
from authz_sidecar.budgets import RedisBudgetBatch, RedisBudgetLedger, RedisReservationBook
from authz_sidecar.decision_log.buffer import DecisionBuffer
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.http_protocol import Request, encode_response
from authz_sidecar.http_server import SidecarHttp
from policy.bundles.bundle import load_bundle
from tests.bench.bench_sidecar import BENCH_POLICY, PATH, REDIS_URL, _forget
from tests.unit.sidecar.factory import AUDIENCE, ISSUER, ORG, access_token, make_bundle, make_keys

ROUNDS = int(os.environ.get("KAIZEN_BENCH_ROUNDS", "3"))
SAMPLES = int(os.environ.get("KAIZEN_BENCH_SAMPLES", "400"))
IDLE = int(os.environ.get("KAIZEN_BENCH_IDLE_MS", "10")) / 1000
GATEWAY_TOKEN = "bench-gateway-credential"

Timed = Callable[[], Awaitable[object]]


def main() -> None:
    uvloop.run(_main())  # the sidecar's event loop


async def _main() -> None:
    prefix = f"kaizen-bench-{secrets.token_hex(4)}:"
    home = Path(tempfile.mkdtemp(prefix="kaizen-bench-cold-"))
    keys = make_keys()
    ledger = RedisBudgetLedger.from_url(REDIS_URL, prefix)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:
        print(f"skipped: Redis at {REDIS_URL} is not reachable ({exc})")
        return
    holder = EngineHolder(ledger, issuer=ISSUER, audience=AUDIENCE)
    holder.on_bundle(load_bundle(make_bundle(keys, policy=BENCH_POLICY), keys.jwks, scope=ORG))
    leases = LeasedBudgets(RedisBudgetBatch(client, prefix))
    log = DecisionBuffer(home / "decision-log")
    http = SidecarHttp(
        Authorizer(
            holder,
            replay_guard=InMemoryReplayGuard(),
            reservations=RedisReservationBook(client, prefix),
            budgets=leases,
            decision_key=hmac.new(
                GATEWAY_TOKEN.encode(), b"kaizen-decision-v1", hashlib.sha256
            ).digest(),
            sink=log,
        ),
        max_body=1 << 20,
        gateway_token=GATEWAY_TOKEN,
    )
    headers = {  # what Envoy's http_service sends for bench_sidecar's call
        "host": "127.0.0.1:10000",
        "authorization": f"Bearer {access_token(keys, exp=2_000_000_000)}",
        "content-length": "0",
        "user-agent": "hey/0.0.1",
        "x-forwarded-proto": "http",
        "x-request-id": "5f1c3b2a-8f7e-4d6c-9b0a-1e2d3c4b5a69",
        "x-envoy-expected-rq-timeout-ms": "1000",
    }

    async def check() -> object:
        request = Request("POST", "/ext_authz" + PATH, dict(headers), b"", "127.0.0.1")
        status, answer_headers, body = await http.handle(request)
        if status != 200:
            raise RuntimeError(f"the bench check answered {status}: {body[:200]!r}")
        return encode_response((status, answer_headers, body), close=False)

    key, message = os.urandom(32), os.urandom(400)

    async def sign() -> object:
        return hmac.new(key, message, hashlib.sha256).digest()

    async def plain() -> object:
        table = {str(i): i * 2 for i in range(200)}
        return sum(table.values())

    rows: dict[str, dict[str, list[float]]] = {}
    cases = {"(r) plain Python": plain, "(h) one HMAC-SHA256": sign, "(k) the check": check}
    try:
        for _ in range(200):  # a lease taken, the caches of the engine filled
            await check()
        for round_ in range(ROUNDS):
            for name, call in cases.items():
                print(f"round {round_ + 1}/{ROUNDS}: {name} ...", flush=True)
                cells = rows.setdefault(name, {"warm": [], "idle": []})
                cells["warm"].append(await _median_us(call, 0.0))
                cells["idle"].append(await _median_us(call, IDLE))
    finally:
        await leases.close()
        await log.close()
        ledger.client.close()
        await client.aclose()
        _forget(prefix)
        shutil.rmtree(home, ignore_errors=True)
    _print(rows)


async def _median_us(call: Timed, idle: float) -> float:
    samples = []
    for _ in range(SAMPLES):
        await asyncio.sleep(idle)  # 0: the loop turns once (queued writes go) and is back
        started = time.perf_counter_ns()
        await call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return statistics.median(samples)


def _print(rows: dict[str, dict[str, list[float]]]) -> None:
    idle_ms = IDLE * 1000
    print(f"\nµs per call, medians of {SAMPLES} calls, then of {ROUNDS} rounds")
    print(f"{'':24} {'warm':>9} {f'after {idle_ms:g} ms idle':>20} {'idle ÷ warm':>12}")
    for name, cells in rows.items():
        warm, idle = statistics.median(cells["warm"]), statistics.median(cells["idle"])
        print(f"{name:24} {warm:9.1f} {idle:20.1f} {idle / warm:12.2f}")
    check = rows["(k) the check"]
    extra = statistics.median(check["idle"]) - statistics.median(check["warm"])
    print(
        f"\nthe check after idling costs {extra:.0f} µs more than warm; M9's goal (added p50 at"
        " 100 req/s ≤ 1 ms) is spent on this, the no-op's own cold path and Envoy's"
    )
    for name, cells in rows.items():
        warm_idle = zip(cells["warm"], cells["idle"], strict=True)
        pairs = " ".join(f"{warm:.1f}/{idle:.1f}" for warm, idle in warm_idle)
        print(f"  rounds of {name}, warm/idle: {pairs}")
