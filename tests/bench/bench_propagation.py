"""Policy propagation: publish once, time until 100 sidecar watchers enforce the change.

Two control-plane replicas (real processes, one PostgreSQL database, one Redis) and 100
watchers, half long-polling each replica. A watcher is what a sidecar runs: `BundleSync`
(long-poll on the bundle endpoint) → `BundleStore` (signature, key, scope, strictly newer
revision) → `EngineHolder` (builds the engine; a change is enforced once it is swapped in).
They run in 4 processes of 25 watchers on this machine's 2 cores. The publish goes to
replica A, so half the watchers hear of it through Redis pub/sub.

Each round publishes a new revision and reports, per watcher, the time from sending the
publish request to that watcher's engine swap. Baselines in the same run: the publish
request alone (compile, test, sign, store), and the same propagation with 1 watcher.
A real fleet verifies on its own cores in parallel; here 100 verifications and engine
builds share two cores, which the 100-watcher figure includes.

Run: `.venv/bin/python -m tests.bench bench_propagation` (needs PostgreSQL and Redis at
KAIZEN_TEST_POSTGRES_URL / KAIZEN_TEST_REDIS_URL).
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import queue
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from authz_sidecar.engine_holder import EngineHolder  # noqa: TID251
from policy.bundles.bundle_store import BundleStore
from policy.bundles.bundle_sync import BundleSync
from policy.engine.budgets import InMemoryBudgetLedger
from tests.bench.postgres import throwaway_database
from tests.e2e import sidecar_procs as procs

REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WATCHERS = 100
PROCESSES = 4
ROUNDS = 5
POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "agent paused-%d is paused" if input.resource.id == "agent:paused-%d"
"""


def _watch(urls: list[str], token: str, count: int, home: str, events: Any) -> None:
    """A process of `count` watchers; puts (revision, wall time) for every engine swap."""

    async def one(index: int) -> None:
        store = BundleStore(Path(home) / f"w{index}")
        holder = EngineHolder(InMemoryBudgetLedger(), issuer="kaizen-studio", audience="x")
        holder.subscribe(lambda snap: events.put((snap.bundle.revision_number, time.time())))
        store.subscribe(holder.on_bundle)
        await BundleSync(store, urls[index % len(urls)], token, wait_seconds=55).run()

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(main())


class Fleet:
    def __init__(self, urls: list[str], token: str, watchers: int, home: Path) -> None:
        self.events: Any = multiprocessing.get_context("spawn").Queue()
        per = [watchers // PROCESSES + (i < watchers % PROCESSES) for i in range(PROCESSES)]
        context = multiprocessing.get_context("spawn")
        self.processes = [
            context.Process(
                target=_watch,
                args=(urls, token, n, str(home / f"p{i}"), self.events),
                daemon=True,
            )
            for i, n in enumerate(per)
            if n
        ]
        self.watchers = watchers

    def __enter__(self) -> Fleet:
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            process.kill()
            process.join()

    def wait_for(self, revision: int, timeout: float = 120) -> list[float]:
        """Wall times at which each watcher swapped in `revision` (one per watcher)."""
        times: list[float] = []
        deadline = time.monotonic() + timeout
        while len(times) < self.watchers:
            try:
                got, at = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"only {len(times)} of {self.watchers} watchers enforced revision "
                    f"{revision} within {timeout} s"
                ) from None
            if got == revision:
                times.append(at)
        return times


class Tenant:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        owner = self.http.post(
            "/api/v1/auth/signup",
            json={
                "email": f"owner-{secrets.token_hex(3)}@example.com",
                "password": "correct horse battery staple",
                "organization": "Bench",
            },
        ).json()
        self.headers = {"Authorization": f"Bearer {owner['access_token']}"}
        gateway = self.http.post(
            "/api/v1/gateways",
            json={"name": "bench", "environment": "prod", "url": "http://127.0.0.1:1"},
            headers=self.headers,
        )
        gateway.raise_for_status()
        self.token = gateway.json()["credential"]
        self.revision = 0

    def publish(self) -> tuple[float, float]:
        """Draft a change and publish it: (wall time sent, seconds the publish took)."""
        n = self.revision + 1
        self.http.post(
            "/api/v1/policies", json={"source": POLICY % (n, n)}, headers=self.headers
        ).raise_for_status()
        sent = time.time()
        response = self.http.post("/api/v1/policies/publish", json={}, headers=self.headers)
        took = time.time() - sent
        response.raise_for_status()
        self.revision = response.json()["revision"]
        return sent, took


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms"
        f"   max {ordered[-1] * 1000:7.1f} ms"
    )


def _round(tenant: Tenant, fleet: Fleet) -> tuple[float, list[float]]:
    sent, took = tenant.publish()
    return took, [at - sent for at in fleet.wait_for(tenant.revision)]


def main() -> None:
    with throwaway_database() as database, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        shared = {
            "database_url": database.url,
            "redis_url": REDIS_URL,
            "redis_prefix": f"kaizen-bench-{secrets.token_hex(3)}:",
            "master_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        replicas = [procs.ControlPlane.configured(home / f"cp{i}", **shared) for i in (0, 1)]
        try:
            for replica in replicas:
                replica.start()
            tenant = Tenant(replicas[0].url)
            tenant.publish()  # revision 1: every watcher starts from a served bundle
            urls = [replica.url for replica in replicas]
            print(
                f"2 control-plane replicas (PostgreSQL + Redis pub/sub); watchers split "
                f"between them; publish on replica A; {ROUNDS} publishes per row"
            )
            for watchers in (1, WATCHERS):
                with Fleet(urls, tenant.token, watchers, home / f"fleet{watchers}") as fleet:
                    fleet.wait_for(tenant.revision)
                    publishes: list[float] = []
                    enforced: list[float] = []
                    for _ in range(ROUNDS):
                        took, delays = _round(tenant, fleet)
                        publishes.append(took)
                        enforced.extend(delays)
                print(f"publish request alone        : {_summary(publishes)}")
                print(f"{watchers:>3} watcher(s) enforcing it : {_summary(enforced)}")
            print("goal: 100 watchers p99 ≤ 1,000 ms (OPA's default polling: 60-120 s)")
        finally:
            for replica in replicas:
                if replica.process is not None:
                    replica.stop()


if __name__ == "__main__":
    main()
