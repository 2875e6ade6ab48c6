"""Restore time: `kaizen-studio backup` / `restore` of a database holding N decisions.

A throw-away PostgreSQL database, migrated; one organisation's N decisions (default
1,000,000; `KAIZEN_BENCH_DECISIONS`) stored through the real ingest path
(`services.ingest.store_decisions`: hash-chained, COPY into the monthly partitions) in
batches of 10,000, so the chain is real and the restore's end-to-end verification walks
all of it. Then, timed: the backup (pg_dump, custom format), dropping and re-creating the
database (the disaster), the restore (pg_restore, one job per core) and the verification
that follows it (signing keys unsealed, every audit and decision chain recomputed). The
recovery time an operator sees is restore + verification.

Run: `.venv/bin/python -m tests.bench bench_restore` (PostgreSQL at KAIZEN_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from control_plane.db.migrate import upgrade
from control_plane.db.models.identity import Organization
from control_plane.db.partitions import ensure_partitions
from control_plane.db.session import SYSTEM, Database
from control_plane.services.ingest import decision_row, store_decisions
from control_plane.settings import Settings
from kaizen_studio.backup import backup, restore
from tests.bench.postgres import POSTGRES_URL, throwaway_database

DECISIONS = int(os.environ.get("KAIZEN_BENCH_DECISIONS", "1000000"))
BATCH = 10_000
GOAL_RTO_SECONDS = 15 * 60  # README: RTO ≤ 15 min


def _decision(organization: uuid.UUID, index: int, moment: datetime) -> dict[str, object]:
    outcome = "deny" if index % 10 == 0 else "allow"
    return decision_row(
        organization,
        None,
        decision_id=f"{index:032x}",
        time=moment,
        decision_input={
            "principal": {"id": f"user:u{index % 5000}@example.com", "type": "user"},
            "action": "invoke",
            "resource": {"type": "agent", "id": f"agent:a{index % 200}", "workspace": "prod"},
            "channel": "api",
            "request": {"method": "POST", "path": f"/v1/agents/a{index % 200}/invoke"},
        },
        result={
            "decision_id": f"{index:032x}",
            "outcome": outcome,
            "reasons": ["no role grants invoke"] if outcome == "deny" else [],
            "matched_rules": ["rbac"],
            "bundle_revision": 3,
        },
        duration_us=150,
        instance="sidecar-0/1",
        source="sidecar",
    )


async def load(url: str) -> tuple[uuid.UUID, float]:
    db = Database(url)
    try:
        await upgrade(db)
        now = datetime.now(UTC)
        await ensure_partitions(db.engine, [now - timedelta(days=1), now])
        async with db.session(SYSTEM) as session:
            organization = Organization(name="restore-bench")
            session.add(organization)
            await session.flush()
            organization_id = organization.id
        started = time.perf_counter()
        for first in range(0, DECISIONS, BATCH):
            rows = [
                _decision(organization_id, i, now - timedelta(microseconds=DECISIONS - i))
                for i in range(first, min(first + BATCH, DECISIONS))
            ]
            async with db.session(organization_id) as session:
                await store_decisions(session, organization_id, rows, "decisions")
            if (first + BATCH) % 200_000 == 0:
                done = first + BATCH
                rate = done / (time.perf_counter() - started)
                print(f"  stored {done:>10,} decisions  {rate:>8,.0f}/s", flush=True)
        return organization_id, time.perf_counter() - started
    finally:
        await db.dispose()


async def _admin(*statements: str) -> None:
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


def main() -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with throwaway_database() as database, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=database.url, master_key=key, home=Path(tmp) / "home")
        print(f"storing {DECISIONS:,} decisions through the ingest path ...", flush=True)
        _, load_s = asyncio.run(load(database.url))
        started = time.perf_counter()
        manifest = backup(settings, Path(tmp) / "backup")
        backup_s = time.perf_counter() - started
        started = time.perf_counter()
        asyncio.run(
            _admin(
                f'DROP DATABASE "{database.name}" WITH (FORCE)',
                f'CREATE DATABASE "{database.name}"',
            )
        )
        destroy_s = time.perf_counter() - started
        report = restore(settings, Path(tmp) / "backup")
        broken = [c for c in report["chains"] if c.problem]
        recovery = report["restore_seconds"] + report["verify_seconds"]
        mib = manifest["bytes"] / (1 << 20)
        print(f"| decisions | {report['decisions']:,} (chains intact: {not broken}) |")
        print(f"| load (ingest path, in process) | {load_s:.1f} s ({DECISIONS / load_s:,.0f}/s) |")
        print(f"| backup (pg_dump -Fc) | {backup_s:.1f} s, {mib:.1f} MiB |")
        print(f"| drop + create database | {destroy_s:.2f} s |")
        print(
            f"| restore (pg_restore, {os.cpu_count()} jobs) | {report['restore_seconds']:.1f} s |"
        )
        print(f"| verify signing keys + every chain | {report['verify_seconds']:.1f} s |")
        print(
            f"| recovery (restore + verify) | {recovery:.1f} s; goal RTO ≤ "
            f"{GOAL_RTO_SECONDS} s: {'met' if recovery <= GOAL_RTO_SECONDS else 'missed'} |"
        )


if __name__ == "__main__":
    main()
