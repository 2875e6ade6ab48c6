"""DecisionBuffer: masking, ordering, crash recovery, back-pressure, segments, acknowledgement."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz_sidecar.decision_log import (  # noqa: TID251
    ACK,
    MASK,
    REJECTED,
    DecisionBuffer,
    DecisionBufferBusy,
)
from policy.bundles.bundle_sync import Backoff

CP = "http://cp.test"


def decisions_of(request: httpx.Request) -> list[dict[str, Any]]:
    """The records of an ingest request, gzip (as the shipper sends them) or plain."""
    content = request.content
    if request.headers.get("content-encoding") == "gzip":
        content = gzip.decompress(content)
    return list(json.loads(content)["decisions"])


def record(n: int, **input_fields: Any) -> dict[str, Any]:
    return {
        "decision_id": f"d-{n:06d}",
        "time": "2026-11-26T12:00:00Z",
        "input": {"action": "invoke", **input_fields},
        "result": {"outcome": "allow", "reasons": []},
        "duration_us": 42,
        "instance": "test/1",
    }


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.ndjson"))


def lines_on_disk(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in segments(directory) for line in p.read_bytes().splitlines()]


class Ingest:
    """An in-memory ingest endpoint (the protocol's answer shape, idempotent by id)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.up = True

    def handler(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "x"}})
        decisions = decisions_of(request)
        new = [d["decision_id"] for d in decisions if d["decision_id"] not in self.ids]
        self.ids.extend(new)
        return httpx.Response(
            200, json={"accepted": len(new), "duplicates": len(decisions) - len(new)}
        )


@contextlib.asynccontextmanager
async def shipping(log: DecisionBuffer, ingest: Ingest, batch: int = 1000) -> AsyncIterator[None]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(ingest.handler))
    task = asyncio.create_task(
        log.ship_forever(CP, "kgw_test", batch=batch, client=client, backoff=Backoff(0.01, 0.05))
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


async def until(condition: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110  (polling counters is what a test can do)
            await asyncio.sleep(0.005)


async def test_masks_configured_fields_without_touching_the_callers_record(tmp_path: Path) -> None:
    log = DecisionBuffer(
        tmp_path,
        mask=["input.tool.arguments.password", "input.request.headers.authorization"],
    )
    original = record(
        1,
        tool={"name": "login", "arguments": {"user": "bob", "password": "hunter2"}},
        request={"headers": {"Authorization": "Bearer secret", "accept": "*/*"}},
    )
    await log.append(original)
    await log.close()

    [written] = lines_on_disk(tmp_path)
    assert written["input"]["tool"]["arguments"] == {"user": "bob", "password": MASK}
    assert written["input"]["request"]["headers"] == {"Authorization": MASK, "accept": "*/*"}
    assert original["input"]["tool"]["arguments"]["password"] == "hunter2"
    raw = b"".join(p.read_bytes() for p in segments(tmp_path))
    assert b"hunter2" not in raw
    assert b"Bearer secret" not in raw


async def test_mask_paths_absent_from_a_record_change_nothing(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path, mask=["input.tool.arguments.password"])
    assert json.loads(log.encode(record(1))) == record(1)
    await log.close()


async def test_lines_are_strict_json_whatever_the_callers_input_held(tmp_path: Path) -> None:
    """A caller's JSON may hold NaN (Python's parser reads it): the line says null, which
    ingest stores (NaN would be refused and the decision set aside). Integers past 64 bits
    and lone surrogates, which orjson refuses, still make a line."""
    log = DecisionBuffer(tmp_path)
    line = log.encode(record(1, amount=float("nan"), big=2**70, odd="\ud800", name="é"))
    assert line.endswith(b"\n")
    assert b"NaN" not in line
    written = json.loads(line)
    assert written["input"]["amount"] is None
    assert written["input"]["big"] == 2**70
    assert written["input"]["odd"] == "\ud800"
    assert written["input"]["name"] == "é"
    clean = log.encode(record(2, amount=float("inf"), name="é"))
    assert "é".encode() in clean
    assert json.loads(clean)["input"]["amount"] is None
    await log.close()


def test_malformed_mask_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dotted"):
        DecisionBuffer(tmp_path, mask=["input..password"])


async def test_appended_records_are_on_disk_in_order_before_append_returns(
    tmp_path: Path,
) -> None:
    log = DecisionBuffer(tmp_path)
    for n in range(50):
        await log.append(record(n))
        # read through a separate file handle, as a new process would after a kill -9
        assert lines_on_disk(tmp_path)[-1]["decision_id"] == f"d-{n:06d}"
    assert log.backlog == 50
    await log.close()


async def test_ships_in_order_and_deletes_acknowledged_segments(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path, segment_bytes=2_000)
    ingest = Ingest()
    for n in range(100):
        await log.append(record(n))
    assert len(segments(tmp_path)) > 5
    async with shipping(log, ingest, batch=7):
        await until(lambda: log.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(100)]
    assert (log.shipped, log.accepted, log.duplicates) == (100, 100, 0)
    assert len(segments(tmp_path)) == 1  # only the segment still being written
    assert log.backlog_bytes == 0
    await log.close()


async def test_acknowledged_offset_survives_a_new_instance(tmp_path: Path) -> None:
    ingest = Ingest()
    log = DecisionBuffer(tmp_path)
    for n in range(30):
        await log.append(record(n))
    async with shipping(log, ingest):
        await until(lambda: log.backlog == 0)
    for n in range(30, 40):
        await log.append(record(n))
    await log.close()
    assert json.loads((tmp_path / ACK).read_bytes())["offset"] > 0

    again = DecisionBuffer(tmp_path)
    assert again.backlog == 10
    async with shipping(again, ingest):
        await until(lambda: again.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(40)]
    assert again.duplicates == 0  # nothing acknowledged was sent twice
    await again.close()


async def test_torn_last_line_is_dropped_not_shipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = DecisionBuffer(tmp_path)
    for n in range(3):
        await log.append(record(n))
    await log.close()
    with segments(tmp_path)[-1].open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"decision_id":"d-torn","inp')

    with caplog.at_level(logging.WARNING):
        again = DecisionBuffer(tmp_path)
    assert "torn last line" in caplog.text
    assert again.backlog == 3
    await again.append(record(3))
    ingest = Ingest()
    async with shipping(again, ingest):
        await until(lambda: again.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(4)]
    await again.close()


async def test_corrupt_line_in_the_middle_is_skipped(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path)
    await log.append(record(0))
    await log.close()
    with segments(tmp_path)[-1].open("ab") as handle:  # e.g. zeros after a power loss
        handle.write(b"\x00\x00\x00\x00\n")
    again = DecisionBuffer(tmp_path)
    await again.append(record(1))
    ingest = Ingest()
    async with shipping(again, ingest):
        await until(lambda: again.backlog == 0)
    assert ingest.ids == ["d-000000", "d-000001"]
    assert again.skipped == 1
    await again.close()


async def test_full_backlog_blocks_append_until_the_shipper_frees_space(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = DecisionBuffer(tmp_path, max_backlog_bytes=2_000, segment_bytes=1_000)
    n = 0
    while log.backlog_bytes < 2_000:
        await log.append(record(n))
        n += 1
    with caplog.at_level(logging.WARNING):
        blocked = [asyncio.create_task(log.append(record(n + i))) for i in range(3)]
        await asyncio.sleep(0.2)
    assert not any(task.done() for task in blocked)
    assert log.backpressure == 3
    assert caplog.text.count("decisions wait for the shipper") == 1  # once per episode

    ingest = Ingest()
    async with shipping(log, ingest, batch=2):
        await asyncio.wait_for(asyncio.gather(*blocked), 10)
        await until(lambda: log.backlog == 0)
    assert ingest.ids == [f"d-{i:06d}" for i in range(n + 3)]  # nothing dropped, in order
    await log.close()


async def test_shipper_retries_until_the_control_plane_answers(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path)
    ingest = Ingest()
    ingest.up = False
    for n in range(5):
        await log.append(record(n))
    async with shipping(log, ingest):
        await until(lambda: log.failures >= 2)
        assert log.backlog == 5
        assert "HTTP 503" in (log.last_error or "")
        ingest.up = True
        await until(lambda: log.backlog == 0)
    assert ingest.ids == [f"d-{n:06d}" for n in range(5)]
    assert log.last_error is None
    await log.close()


async def test_credential_refused_is_actionable(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path)
    await log.append(record(0))
    refusing = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(401, json={}))
    )
    task = asyncio.create_task(
        log.ship_forever(CP, "kgw_secret", client=refusing, backoff=Backoff(0.01, 0.02))
    )
    await until(lambda: log.failures >= 1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await refusing.aclose()
    assert "gateway credential refused" in (log.last_error or "")
    assert "KAIZEN_GATEWAY_TOKEN" in (log.last_error or "")
    assert "kgw_secret" not in (log.last_error or "")
    assert log.backlog == 1
    await log.close()


async def test_a_second_process_cannot_share_a_directory(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path)
    with pytest.raises(DecisionBufferBusy, match="worker-N"):
        DecisionBuffer(tmp_path)
    await log.close()
    await DecisionBuffer(tmp_path).close()  # free again once closed


async def test_flush_makes_appends_durable_and_close_rejects_more(tmp_path: Path) -> None:
    log = DecisionBuffer(tmp_path, fsync_interval=0.01)
    await log.append(record(0))
    await log.flush()
    await log.close()
    with pytest.raises(RuntimeError, match="closed"):
        await log.append(record(1))


class Picky(Ingest):
    """Refuses, as the control plane does, a batch holding a record it cannot store (422)."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        decisions = decisions_of(request)
        for index, decision in enumerate(decisions):
            if decision["input"].get("poison"):
                return httpx.Response(
                    422,
                    json={
                        "error": {
                            "code": "invalid",
                            "message": "invalid decision batch",
                            "details": [{"field": f"decisions.{index}.input"}],
                        }
                    },
                )
        return super().handler(request)


async def test_a_record_the_control_plane_refuses_is_kept_aside_and_shipping_goes_on(
    tmp_path: Path,
) -> None:
    log = DecisionBuffer(tmp_path)
    for n in range(30):
        await log.append(record(n, poison=n == 7))
    ingest = Picky()
    async with shipping(log, ingest, batch=10):
        await until(lambda: log.backlog == 0)
        for n in range(30, 35):  # back to whole batches afterwards
            await log.append(record(n))
        await until(lambda: log.backlog == 0)
    await log.close()
    # None lost, none twice; with two batches in flight the one behind the refused batch
    # may be stored first.
    assert sorted(ingest.ids) == [f"d-{n:06d}" for n in range(35) if n != 7]
    assert len(set(ingest.ids)) == len(ingest.ids)
    assert log.rejected == 1
    kept = (tmp_path / REJECTED).read_bytes().splitlines()
    assert [json.loads(line)["decision_id"] for line in kept] == ["d-000007"]


class Parsing(Ingest):
    """Refuses, as the control plane does, a body that is not JSON (422 naming `body`)."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        try:
            decisions_of(request)
        except ValueError:
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
        return super().handler(request)


async def test_a_line_damaged_inside_its_braces_is_kept_aside_by_ingests_refusal(
    tmp_path: Path,
) -> None:
    """The reader checks a line's shape, not its JSON: NULs inside a record's braces (a
    disk's damage) reach ingest, whose 422 sends the batch record by record, so the damaged
    line is kept aside and every other record arrives once."""
    log = DecisionBuffer(tmp_path)
    for n in range(3):
        await log.append(record(n))
    await log.close()
    with segments(tmp_path)[-1].open("ab") as handle:
        handle.write(b'{"decision_id": "d-\x00\x00\x00\x00"}\n')
    again = DecisionBuffer(tmp_path)
    for n in range(3, 6):
        await again.append(record(n))
    ingest = Parsing()
    async with shipping(again, ingest):
        await until(lambda: again.backlog == 0)
    await again.close()
    assert sorted(ingest.ids) == [f"d-{n:06d}" for n in range(6)]
    assert len(set(ingest.ids)) == len(ingest.ids)
    assert again.rejected == 1
    assert (tmp_path / REJECTED).read_bytes() == b'{"decision_id": "d-\x00\x00\x00\x00"}\n'
