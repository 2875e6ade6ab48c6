"""Decision log: append throughput and shipping throughput.

Append: `DecisionBuffer.append` (two mask paths, NDJSON, one `os.write` per record, fsync in
the background every 50 ms) against the baselines measured in the same run: the same
records serialised unmasked and written with a plain `os.write` each, and a plain
`os.write` of lines already serialised. Shipping: records/s from a full local log to the
control-plane stand-in of tests/integration/test_sidecar_sync.py (uvicorn in this same
process, so it shares the CPU with the shipper), batches of 1,000.

Run: `.venv/bin/python -m tests.bench bench_decision_log`
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from authz_sidecar.decision_log import DecisionBuffer  # noqa: TID251
from tests.integration.test_sidecar_sync import TOKEN, ControlPlaneStandIn, Running

APPENDS = 50_000
SHIPPED = 50_000
ROUNDS = 3
MASK = ["input.tool.arguments.password", "input.request.headers.authorization"]


def decision(n: int) -> dict[str, Any]:
    """A typical MCP tool-call decision record (~900 bytes as NDJSON); every other one has
    no workspace (`null`), as a sidecar without a workspace setting logs them."""
    return {
        "decision_id": f"0193b1c2d3e4f5a6b7c8{n:012x}",
        "time": "2026-11-26T12:00:00.123456Z",
        "input": {
            "principal": {
                "id": f"user:user-{n % 500}@example.com",
                "type": "user",
                "organization": "org-5e1d",
                "roles": ["agent-user"],
                "teams": ["sre", "research"],
                "attributes": {},
            },
            "action": "invoke",
            "resource": {
                "type": "agent",
                "id": f"agent:bot-{n % 40}",
                "workspace": "prod" if n % 2 else None,
            },
            "channel": "mcp",
            "tool": {"name": "search", "arguments": {"query": "quarterly report", "password": "x"}},
            "request": {
                "method": "POST",
                "path": "/mcp",
                "source_ip": "10.0.0.7",
                "headers": {"authorization": "Bearer eyJhbGciOi...", "user-agent": "cli/1.0"},
            },
            "context": {
                "time": "2026-11-26T12:00:00Z",
                "environment": "prod",
                "gateway": "gw-1",
                "estimated_cost_usd": 0.01,
            },
        },
        "result": {
            "decision_id": f"0193b1c2d3e4f5a6b7c8{n:012x}",
            "outcome": "allow",
            "reasons": [],
            "bundle_revision": 42,
            "key_id": "cp-1",
        },
        "duration_us": 180,
        "instance": "sidecar-0/4242",
    }


def baseline_dumps_and_write(directory: Path, records: list[dict[str, Any]]) -> float:
    fd = os.open(directory / "baseline.ndjson", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    started = time.perf_counter()
    for record in records:
        os.write(fd, json.dumps(record, separators=(",", ":")).encode() + b"\n")
    elapsed = time.perf_counter() - started
    os.fsync(fd)
    os.close(fd)
    return len(records) / elapsed


def baseline_write_only(directory: Path, lines: list[bytes]) -> float:
    fd = os.open(directory / "raw.ndjson", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    started = time.perf_counter()
    for line in lines:
        os.write(fd, line)
    elapsed = time.perf_counter() - started
    os.fsync(fd)
    os.close(fd)
    return len(lines) / elapsed


async def decision_log_appends(directory: Path, records: list[dict[str, Any]]) -> float:
    log = DecisionBuffer(directory, mask=MASK)
    started = time.perf_counter()
    for record in records:
        await log.append(record)
    elapsed = time.perf_counter() - started
    await log.close()
    return len(records) / elapsed


async def shipping(directory: Path, records: list[dict[str, Any]]) -> tuple[float, int]:
    running = Running(ControlPlaneStandIn())
    await running.start()
    log = DecisionBuffer(directory, mask=MASK)
    for record in records:
        await log.append(record)
    started = time.perf_counter()
    shipper = asyncio.create_task(log.ship_forever(running.url, TOKEN, batch=1000))
    while log.backlog:  # noqa: ASYNC110  (the bench watches the counter the runtime exposes)
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    shipper.cancel()
    await asyncio.gather(shipper, return_exceptions=True)
    await log.close()
    await running.stop()
    return len(records) / elapsed, running.standin.accepted


def main() -> None:
    records = [decision(n) for n in range(APPENDS)]
    lines = [json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records]
    print(f"{APPENDS:,} records, {sum(map(len, lines)) // APPENDS} bytes each on average")
    header = ("round", "os.write only", "dumps+os.write", "DecisionBuffer", "ratio")
    print("{:>5} {:>15} {:>15} {:>15} {:>7}".format(*header))
    for round_ in range(1, ROUNDS + 1):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            raw = baseline_write_only(directory, lines)
            plain = baseline_dumps_and_write(directory, records)
            ours = asyncio.run(decision_log_appends(directory / "log", records))
        print(
            f"{round_:>5} {raw:>13,.0f}/s {plain:>13,.0f}/s {ours:>13,.0f}/s {ours / plain:>7.2f}"
        )
    print("ratio = DecisionBuffer appends/s ÷ unmasked json.dumps + os.write appends/s")
    with tempfile.TemporaryDirectory() as tmp:
        rate, accepted = asyncio.run(shipping(Path(tmp), [decision(n) for n in range(SHIPPED)]))
    print(f"shipping to the stand-in: {rate:,.0f} records/s ({accepted:,} accepted)")


if __name__ == "__main__":
    main()
