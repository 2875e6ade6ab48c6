"""DecisionBuffer shipping overlaps reading the next batch and persisting the last
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

from authz_sidecar.decision_log import ACK, DecisionBuffer  # noqa: TID251
from authz_sidecar.decision_log import buffer as module  # noqa: TID251
from policy.bundles.bundle_store import write_atomically
from policy.bundles.bundle_sync import Backoff
from tests.unit.sidecar_sync.test_decision_log import CP, decisions_of, record, until


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
            decisions = decisions_of(request)
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
async def shipping(
    log: DecisionBuffer,
    ingest: SlowIngest,
    batch: int,
    in_flight: int = 2,
    linger: float = 0.05,
    ack_interval: float = 0.0,
) -> Any:
    client = httpx.AsyncClient(transport=httpx.MockTransport(ingest.handler))
    task = asyncio.create_task(
        log.ship_forever(
            CP,
            "kgw_test",
            batch=batch,
            client=client,
            backoff=Backoff(0.01, 0.05),
            in_flight=in_flight,
            linger=linger,
            ack_interval=ack_interval,
        )
    )
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


@pytest.mark.parametrize("in_flight", [1, 2, 3])
async def test_at_most_in_flight_requests_and_acknowledged_before_persisted(
    tmp_path: Path, in_flight: int
) -> None:
    log = DecisionBuffer(tmp_path, segment_bytes=3_000)
    ingest = SlowIngest(tmp_path)
    for n in range(200):
        await log.append(record(n))
    async with shipping(log, ingest, batch=9, in_flight=in_flight):
        await until(lambda: log.backlog == 0)
    if in_flight == 1:  # one at a time: stored in the order appended
        assert ingest.ids == [f"d-{n:06d}" for n in range(200)]
    assert sorted(ingest.ids) == [f"d-{n:06d}" for n in range(200)]
    assert ingest.most_in_flight <= in_flight
    assert ingest.most_in_flight > 1 or in_flight == 1  # requests did overlap
    assert not ingest.persisted_ahead
    assert (log.accepted, log.duplicates, log.backlog_bytes) == (200, 0, 0)
    await log.close()


async def test_cancelled_mid_stream_a_new_instance_resends_only_what_was_unacknowledged(
    tmp_path: Path,
) -> None:
    """At the cut, up to `in_flight` (2) batches may be stored but unanswered and one more
    answered but not yet persisted (that runs in the background): a new instance resends
    at most those three batches, never from the start (40 or more were stored)."""
    log = DecisionBuffer(tmp_path)
    ingest = SlowIngest(tmp_path)
    for n in range(100):
        await log.append(record(n))
    async with shipping(log, ingest, batch=10):
        await until(lambda: len(ingest.ids) >= 40)
    await log.close()

    again = DecisionBuffer(tmp_path)
    async with shipping(again, ingest, batch=10):
        await until(lambda: again.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(100)]
    assert again.duplicates <= 3 * 10
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
    log = DecisionBuffer(tmp_path)
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


class Gated(SlowIngest):
    """Fails the first answer for one batch (503) after the batch behind it was stored."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.failed = False
        self.behind_stored = asyncio.Event()
        self.encodings: list[str | None] = []

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.encodings.append(request.headers.get("content-encoding"))
        first = decisions_of(request)[0]["decision_id"]
        if first == "d-000010" and not self.failed:
            async with asyncio.timeout(5):
                await self.behind_stored.wait()  # the batch behind it is answered 200 first
            self.failed = True
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "x"}})
        answer = await super().handler(request)
        if first == "d-000020":
            self.behind_stored.set()
        return answer


async def test_a_failure_ahead_of_a_stored_batch_resends_both_and_stores_each_once(
    tmp_path: Path,
) -> None:
    log = DecisionBuffer(tmp_path)
    ingest = Gated(tmp_path)
    for n in range(40):
        await log.append(record(n))
    async with shipping(log, ingest, batch=10, in_flight=2):
        await until(lambda: log.backlog == 0)
    assert sorted(ingest.ids) == [f"d-{n:06d}" for n in range(40)]
    assert len(set(ingest.ids)) == 40
    assert log.failures == 1
    # The batch stored behind the failed one was not acknowledged on its first answer:
    # sent again, it came back as duplicates.
    assert (log.accepted, log.duplicates) == (30, 10)
    assert set(ingest.encodings) == {"gzip"}
    assert not ingest.persisted_ahead
    await log.close()


class Uncompressing(SlowIngest):
    """A control plane that reads only plain bodies: a gzip body is "not JSON" (422)."""

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("content-encoding"):
            return httpx.Response(
                422,
                json={
                    "error": {
                        "code": "invalid",
                        "message": "body: not JSON",
                        "details": [{"field": "body", "message": "not JSON"}],
                    }
                },
            )
        return await super().handler(request)


async def test_a_control_plane_that_cannot_read_gzip_gets_plain_bodies_and_nothing_is_rejected(
    tmp_path: Path,
) -> None:
    log = DecisionBuffer(tmp_path)
    ingest = Uncompressing(tmp_path)
    for n in range(30):
        await log.append(record(n))
    async with shipping(log, ingest, batch=10):
        await until(lambda: log.backlog == 0)
    assert sorted(ingest.ids) == [f"d-{n:06d}" for n in range(30)]
    assert log.rejected == 0
    await log.close()


class Counting(SlowIngest):
    """Records the size of each post."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.sizes: list[int] = []

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.sizes.append(len(decisions_of(request)))
        return await super().handler(request)


async def test_full_batches_go_at_once_and_a_partial_one_lingers(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path)
    ingest = Counting(tmp_path)
    for n in range(12):
        await log.append(record(n))
    # A long linger: were a full batch held by it, `until` would time out.
    async with shipping(log, ingest, batch=5, linger=30.0):
        await until(lambda: ingest.sizes == [5, 5], within=5)
        await asyncio.sleep(0.3)
        assert ingest.sizes == [5, 5]  # the last two wait for more, or for the linger
    async with shipping(log, ingest, batch=5, linger=0.05):
        await until(lambda: log.backlog == 0, within=5)
    assert ingest.sizes == [5, 5, 2]
    async with shipping(log, ingest, batch=5, linger=30.0):
        await log.append(record(12))  # nothing posted yet by this shipper: at once
        await until(lambda: log.backlog == 0, within=5)
    assert ingest.sizes == [5, 5, 2, 1]
    assert sorted(ingest.ids) == [f"d-{n:06d}" for n in range(13)]
    await log.close()


async def test_the_acknowledgement_is_written_once_an_interval_and_when_shipping_stops(
    tmp_path: Path,
) -> None:
    log = DecisionBuffer(tmp_path)
    ingest = Counting(tmp_path)
    for n in range(15):
        await log.append(record(n))
    async with shipping(log, ingest, batch=5, ack_interval=30.0):
        await until(lambda: log.backlog == 0, within=5)
        assert ingest.sizes == [5, 5, 5]
        first = json.loads((tmp_path / ACK).read_bytes())  # written once, early on
        assert log.acknowledged.offset == first["offset"]
        unwritten = log.read_batch(log.acknowledged, 100)  # what a crash now would resend
        assert unwritten is not None
        assert len(unwritten.lines) >= 10  # at least the last two batches
    stopped = json.loads((tmp_path / ACK).read_bytes())  # the last, written on the way out
    assert stopped["offset"] > first["offset"]
    assert log.read_batch(log.acknowledged, 100) is None  # nothing left to resend
    await log.close()
