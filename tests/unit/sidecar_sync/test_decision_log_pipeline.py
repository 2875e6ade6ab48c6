"""DecisionLog shipping overlaps reading the next batch and persisting the last
acknowledgement with the request in flight; requests stay one at a time, in order, and the
persisted position never passes what the control plane acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz_sidecar import decision_log as module  # noqa: TID251
from authz_sidecar.decision_log import ACK, DecisionLog  # noqa: TID251
from policy.bundle_store import write_atomically
from policy.bundle_sync import Backoff
from tests.unit.sidecar_sync.test_decision_log import CP, record, until


class SlowIngest:
    """Answers after a pause, recording overlap and what it had acknowledged at each ack."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ids: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.persisted_ahead = False

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._check_persisted_position()
            await asyncio.sleep(0.01)
            decisions = json.loads(request.content)["decisions"]
            new = [d["decision_id"] for d in decisions if d["decision_id"] not in self.ids]
            self.ids.extend(new)
            return httpx.Response(
                200, json={"accepted": len(new), "duplicates": len(decisions) - len(new)}
            )
        finally:
            self.in_flight -= 1

    def _check_persisted_position(self) -> None:
        # Every line before the persisted position must already be here.
        try:
            ack = json.loads((self.directory / ACK).read_bytes())
        except FileNotFoundError:
            return
        path = self.directory / f"{ack['segment']:020d}.ndjson"
        if not path.exists():
            return
        before = path.read_bytes()[: ack["offset"]].splitlines()
        if any(json.loads(line)["decision_id"] not in self.ids for line in before):
            self.persisted_ahead = True


@contextlib.asynccontextmanager
async def shipping(log: DecisionLog, ingest: SlowIngest, batch: int) -> Any:
    client = httpx.AsyncClient(transport=httpx.MockTransport(ingest.handler))
    task = asyncio.create_task(
        log.ship_forever(CP, "kgw_test", batch=batch, client=client, backoff=Backoff(0.01, 0.05))
    )
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


async def test_one_request_at_a_time_in_order_and_acknowledged_before_persisted(
    tmp_path: Path,
) -> None:
    log = DecisionLog(tmp_path, segment_bytes=3_000)
    ingest = SlowIngest(tmp_path)
    for n in range(200):
        await log.append(record(n))
    async with shipping(log, ingest, batch=9):
        await until(lambda: log.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(200)]
    assert ingest.most_in_flight == 1
    assert not ingest.persisted_ahead
    assert (log.accepted, log.duplicates, log.backlog_bytes) == (200, 0, 0)
    await log.close()


async def test_cancelled_mid_stream_a_new_instance_resends_at_most_one_batch(
    tmp_path: Path,
) -> None:
    log = DecisionLog(tmp_path)
    ingest = SlowIngest(tmp_path)
    for n in range(100):
        await log.append(record(n))
    async with shipping(log, ingest, batch=10):
        await until(lambda: len(ingest.ids) >= 40)
    await log.close()

    again = DecisionLog(tmp_path)
    async with shipping(again, ingest, batch=10):
        await until(lambda: again.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(100)]
    assert again.duplicates <= 10
    await again.close()


async def test_a_failed_acknowledgement_write_resends_rather_than_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = write_atomically
    failures = iter([False, True, False])

    def flaky(target: Path, body: bytes) -> None:
        if next(failures, False):
            raise OSError(28, "No space left on device")
        real(target, body)

    monkeypatch.setattr(module, "write_atomically", flaky)
    log = DecisionLog(tmp_path)
    ingest = SlowIngest(tmp_path)
    for n in range(50):
        await log.append(record(n))
    async with shipping(log, ingest, batch=10):
        await until(lambda: log.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(50)]
    assert log.duplicates > 0  # the batch whose acknowledgement was lost went again
    assert log.failures >= 1
    assert json.loads((tmp_path / ACK).read_bytes())["offset"] > 0
    assert log.backlog_bytes == 0
    await log.close()
