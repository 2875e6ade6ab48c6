"""Decision-log shipping end to end: a real sidecar process ships its local log to a real
control plane (PostgreSQL), with and without faults, and every record is counted.

Each run fills the sidecar's durable log with N decisions (as a sidecar that decided them
while the control plane was away would have), starts `kaizen-studio sidecar` in sync
mode, and times until the control plane's `decision_logs` table holds all N:

- clean: nothing goes wrong (the baseline of this run);
- faults: the sidecar is killed with SIGKILL a third of the way and started again, and
  the control plane is stopped two thirds of the way and started again.

Zero loss means: every decision id written to the log is in the table exactly once. The
records are the ~900-byte MCP decisions of bench_decision_log. The sidecar, the control
plane, PostgreSQL and this script share the machine's cores.

Run: `.venv/bin/python -m tests.bench bench_log_shipping` (PostgreSQL and Redis as for
the tests; `KAIZEN_BENCH_RECORDS` sets N, default 60,000).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from authz_sidecar.decision_log import DecisionBuffer  # noqa: TID251
from tests.bench.bench_check_cpu import TICKS, cpu_seconds
from tests.bench.bench_decision_log import MASK, decision
from tests.bench.postgres import ThrowawayDatabase, throwaway_database
from tests.e2e import sidecar_procs as procs

REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RECORDS = int(os.environ.get("KAIZEN_BENCH_RECORDS", "60000"))
POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
"""


async def _fill(directory: Path, first: int, count: int) -> set[str]:
    log = DecisionBuffer(directory, mask=MASK)
    ids = set()
    for n in range(first, first + count):
        record = decision(n)
        ids.add(record["decision_id"])
        await log.append(record)
    await log.close()
    return ids


class Database:
    """What the bench reads back from the throw-away database the control plane writes."""

    def __init__(self, database: ThrowawayDatabase) -> None:
        self.url, self._dsn = database.url, database.dsn
        self._loop = asyncio.new_event_loop()
        self._poller: asyncpg.Connection | None = None

    def stored(self, ids: set[str]) -> tuple[int, int]:
        """(how many of `ids` are stored, how many rows hold them — more means duplicates)."""

        async def query() -> tuple[int, int]:
            connection = await asyncpg.connect(self._dsn)
            try:
                rows = await connection.fetch(
                    "SELECT decision_id FROM decision_logs WHERE decision_id = ANY($1::text[])",
                    list(ids),
                )
            finally:
                await connection.close()
            found = [row["decision_id"] for row in rows]
            return len(set(found)), len(found)

        return asyncio.run(query())

    def count(self) -> int:
        """Decisions stored so far: the organisations' chain heads, which move in the same
        transaction as the rows (one row to read, on one kept connection, so that polling
        every 50 ms neither scans the growing table nor forks a backend each time)."""

        async def query() -> int:
            if self._poller is None:
                self._poller = await asyncpg.connect(self._dsn)
            return int(
                await self._poller.fetchval(
                    "SELECT coalesce(sum(head_sequence), 0) FROM decision_chains"
                )
            )

        return self._loop.run_until_complete(query())

    def close(self) -> None:
        if self._poller is not None:
            self._loop.run_until_complete(self._poller.close())
        self._loop.close()


def postgres_cpu_seconds() -> float:
    """utime + stime of every live PostgreSQL process (the backends and their helpers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
        except OSError:
            continue
        if head.endswith("(postgres"):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


class Rig:
    def __init__(self, home: Path, database: Database) -> None:
        self.home = home
        self.database = database
        self.cp = procs.ControlPlane.configured(
            home / "cp",
            database_url=database.url,
            redis_url=REDIS_URL,
            redis_prefix=f"kaizen-bench-{secrets.token_hex(3)}:",
            master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        self.cp.start()
        http = httpx.Client(base_url=self.cp.url, timeout=60)
        owner = http.post(
            "/api/v1/auth/signup",
            json={
                "email": "owner@example.com",
                "password": "correct horse battery staple",
                "organization": "Bench",
            },
        ).json()
        headers = {"Authorization": f"Bearer {owner['access_token']}"}
        http.post("/api/v1/policies", json={"source": POLICY}, headers=headers).raise_for_status()
        http.post("/api/v1/policies/publish", json={}, headers=headers).raise_for_status()
        gateway = http.post(
            "/api/v1/gateways",
            json={"name": "bench", "environment": "prod", "url": "http://127.0.0.1:1"},
            headers=headers,
        )
        gateway.raise_for_status()
        http.close()
        self.env = {
            "KAIZEN_GATEWAY_TOKEN": gateway.json()["credential"],
            "KAIZEN_CONTROL_PLANE_URL": self.cp.url,
            "KAIZEN_SIDECAR_WORKERS": "1",
        }

    def sidecar(self, home: Path) -> Any:
        return procs.start_sidecar(home, procs.free_port(), procs.free_port(), **self.env)

    def run(self, name: str, first: int, faults: bool) -> tuple[float, float, int, int]:
        """(records/s from the sidecar's launch, records/s once it was up, stored, rows)."""
        home = self.home / name
        ids = asyncio.run(_fill(home / "sidecar" / "decision-log" / "worker-0", first, RECORDS))
        before = self.database.count()
        cpu = {
            "control plane": cpu_seconds(self.cp.process.pid),
            "PostgreSQL": postgres_cpu_seconds(),
        }
        started = time.perf_counter()
        sidecar = self.sidecar(home)
        up, stored_when_up = time.perf_counter(), self.database.count() - before
        try:
            if faults:

                def arrived(share: float) -> Callable[[], bool]:
                    return lambda: self.database.count() - before >= RECORDS * share

                _until(arrived(1 / 3), 300, "a third of the records arriving")
                procs.stop(sidecar, signal.SIGKILL)
                sidecar = self.sidecar(home)
                _until(arrived(2 / 3), 300, "two thirds of the records arriving")
                self.cp.stop()
                time.sleep(1.0)  # the sidecar keeps deciding and buffering meanwhile
                self.cp.start()
            _until(lambda: self.database.count() - before >= RECORDS, 600, "every record")
            finished = time.perf_counter()
            if not faults:  # the same processes throughout: CPU per record of each
                spent = {
                    "sidecar": cpu_seconds(sidecar.pid),
                    "control plane": cpu_seconds(self.cp.process.pid) - cpu["control plane"],
                    "PostgreSQL": postgres_cpu_seconds() - cpu["PostgreSQL"],
                }
                print(
                    "CPU µs per record: "
                    + ", ".join(f"{who} {s / RECORDS * 1e6:.0f}" for who, s in spent.items())
                )
        finally:
            procs.stop(sidecar)
        stored, rows = self.database.stored(ids)
        shipping = (RECORDS - stored_when_up) / (finished - up)
        return RECORDS / (finished - started), shipping, stored, rows

    def close(self) -> None:
        self.cp.stop()


def main() -> None:
    with throwaway_database() as throwaway, tempfile.TemporaryDirectory() as tmp:
        database = Database(throwaway)
        try:
            rig = Rig(Path(tmp), database)
            try:
                print(f"{RECORDS:,} decisions per run; sidecar → control plane → PostgreSQL")
                print(
                    f"{'run':<8} {'records/s':>11} {'once up':>9} {'stored':>8} {'rows':>8}"
                    "  lost  dup"
                )
                rates = {}
                for index, (name, faults) in enumerate((("clean", False), ("faults", True))):
                    rate, shipping, stored, rows = rig.run(name, index * RECORDS, faults)
                    rates[name] = rate
                    print(
                        f"{name:<8} {rate:>11,.0f} {shipping:>9,.0f} {stored:>8,} {rows:>8,}  "
                        f"{RECORDS - stored:>4} {rows - stored:>4}"
                    )
                print(
                    f"faults ÷ clean: {rates['faults'] / rates['clean']:.2f} "
                    "(the faults run includes a sidecar restart and a control-plane restart)"
                )
                print(
                    "records/s counts from the sidecar's launch; 'once up' from when it answered "
                    "/healthz (its start-up, ~1 s here, left out; in the faults run the restarts "
                    "stay in)"
                )
                print("goal (M9): ≥ 20,000 decisions/s with zero lost and zero duplicated")
            finally:
                rig.close()
        finally:
            database.close()


if __name__ == "__main__":
    main()
