"""Decision log: mask at source, append to local NDJSON segments, ship until acknowledged.

`append` writes the record's line with one `os.write` before it returns, so a killed
process loses nothing it appended (the page cache survives the process); a background
task fsyncs every `fsync_interval` for power loss. `ship_forever` posts batches to
`/api/v1/decisions/ingest` one at a time, in order, and moves a persisted acknowledged
position (`ack.json`, replaced atomically) only after a 200; fully acknowledged segments are
deleted. While a batch is in flight the shipper reads the next one and persists the previous
acknowledgement, so neither disk nor fsync waits sit between two requests. Ingest is
idempotent by `decision_id`, so a resend after a crash is harmless.

One directory per worker process (`…/decision-log/worker-N`): an exclusive lock on it
refuses a second writer. When the unacknowledged backlog reaches `max_backlog_bytes`,
`append` waits for the shipper (back-pressure) rather than dropping a decision.

Directory layout: `<20-digit index>.ndjson` segments (a new one at every start and every
`segment_bytes`), `ack.json` = `{"segment": index, "offset": bytes}`, `.lock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from policy.bundle_store import write_atomically
from policy.bundle_sync import Backoff, credential_refused_message

__all__ = ["MASK", "DecisionLog", "DecisionLogBusy"]

logger = logging.getLogger(__name__)

MASK = "***"
MiB = 1024 * 1024
ACK = "ack.json"
# Records the control plane refused as invalid (422), one by one: kept here, never dropped.
REJECTED = "rejected.ndjson"
_LOCK = ".lock"
_SEGMENT = re.compile(r"^(\d{20})\.ndjson$")
_MAX_BATCH_BYTES = 8 * MiB  # one ingest request stays well under any sane body limit


class DecisionLogBusy(RuntimeError):
    """Another process holds this decision-log directory."""


class _Outcome(enum.Enum):
    IDLE = "idle"
    SHIPPED = "shipped"
    FAILED = "failed"


@dataclass(frozen=True)
class _Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class _Batch:
    start: _Position
    end: _Position
    lines: list[bytes]
    consumed_records: int  # lines shipped plus lines skipped as unreadable
    consumed_bytes: int
    skipped: int


def _segment_name(index: int) -> str:
    return f"{index:020d}.ndjson"


def _mask_value(value: Any, path: Sequence[str]) -> Any:
    """`value` with `path` replaced by MASK; containers on the path are copied, not mutated."""
    if not path:
        return MASK
    if isinstance(value, dict):
        key = path[0]
        hits = [k for k in value if k == key or (isinstance(k, str) and k.lower() == key)]
        if not hits:
            return value
        copy = dict(value)
        for hit in hits:
            copy[hit] = _mask_value(value[hit], path[1:])
        return copy
    if isinstance(value, list):
        return [_mask_value(item, path) for item in value]
    return value


def _parse_mask(paths: Sequence[str]) -> list[tuple[str, ...]]:
    parsed = []
    for path in paths:
        parts = tuple(part.lower() for part in path.split("."))
        if not path or any(not part for part in parts):
            raise ValueError(
                f"mask path {path!r} must be dotted names, e.g. input.tool.arguments.x"
            )
        parsed.append(parts)
    return parsed


class DecisionLog:
    """A crash-safe local buffer of decision records and the shipper that drains it."""

    def __init__(
        self,
        directory: Path,
        *,
        mask: Sequence[str] = (),
        max_backlog_bytes: int = 256 * MiB,
        segment_bytes: int = 16 * MiB,
        fsync_interval: float = 0.05,
    ) -> None:
        if max_backlog_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_backlog_bytes and segment_bytes must be positive")
        self.directory = Path(directory)
        self.max_backlog_bytes = max_backlog_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval = fsync_interval
        self._masks = _parse_mask(mask)
        self.backlog = 0  # records not yet acknowledged
        self.backlog_bytes = 0
        self.appended = 0
        self.shipped = 0  # records the control plane acknowledged (accepted + duplicates)
        self.accepted = 0
        self.duplicates = 0
        self.failures = 0
        self.backpressure = 0  # appends that had to wait for the shipper
        self.skipped = 0  # unreadable lines (torn or corrupt) left out of shipping
        self.rejected = 0  # records the control plane refused as invalid, kept in REJECTED
        self.last_error: str | None = None
        self.last_shipped: datetime | None = None
        self._closed = False
        self._episode = False
        self._waiting = 0
        self._batch_size = 1000
        self._isolating = 0  # records still to send one by one after a refused batch
        self._full_batch = 1000
        self._space = asyncio.Condition()
        self._new_data = asyncio.Event()
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._retired: list[int] = []  # rotated-out segment fds: fsync'd and closed by the flusher
        self._directory_dirty = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        try:
            self._ack = self._recover()  # persisted: where a restart resumes
            self._segment = self._next_index()
            self._fd = self._open_segment(self._segment)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._segment_size = 0
        self._sent = self._ack  # acknowledged by the control plane, maybe not yet persisted
        self._prefetch: asyncio.Future[_Batch | None] | None = None
        self._persisting: asyncio.Future[None] | None = None

    # -- appending ---------------------------------------------------------------------------

    def encode(self, record: dict[str, Any]) -> bytes:
        """The masked NDJSON line for `record` (the caller's dict is left as it was)."""
        for path in self._masks:
            record = _mask_value(record, path)
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"

    async def append(self, record: dict[str, Any]) -> None:
        """Mask and write `record`; on return it survives a crash of this process."""
        if self._closed:
            raise RuntimeError("the decision log is closed")
        line = self.encode(record)
        if self.backlog_bytes >= self.max_backlog_bytes or self._waiting:
            await self._wait_for_space()  # waiters go first: records keep their order
        self._write(line)

    async def _wait_for_space(self) -> None:
        self.backpressure += 1
        if not self._episode:
            self._episode = True
            logger.warning(
                "decision log %s: %d bytes not yet acknowledged (limit %d); decisions wait for "
                "the shipper — is the control plane reachable?",
                self.directory,
                self.backlog_bytes,
                self.max_backlog_bytes,
            )
        self._waiting += 1
        try:
            async with self._space:
                await self._space.wait_for(
                    lambda: self.backlog_bytes < self.max_backlog_bytes or self._closed
                )
        finally:
            self._waiting -= 1
        if self._closed:
            raise RuntimeError("the decision log is closed")

    def _write(self, line: bytes) -> None:
        if self._segment_size and self._segment_size + len(line) > self.segment_bytes:
            self._rotate()
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        self._segment_size += len(line)
        self.backlog += 1
        self.backlog_bytes += len(line)
        self.appended += 1
        self._new_data.set()
        self._dirty.set()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    def _rotate(self) -> None:
        self._retired.append(self._fd)
        self._segment += 1
        self._fd = self._open_segment(self._segment)
        self._segment_size = 0

    def _open_segment(self, index: int) -> int:
        fd = os.open(
            self.directory / _segment_name(index),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
            0o600,  # masked, but still who did what: not for other local users
        )
        self._directory_dirty = True
        return fd

    # -- durability ----------------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while not self._closed:
            await self._dirty.wait()
            await asyncio.sleep(self.fsync_interval)
            if not self._closed:
                try:
                    await self.flush()
                except OSError as exc:  # keep trying: the next fsync may succeed
                    logger.error("decision log %s: fsync failed: %s", self.directory, exc)

    async def flush(self) -> None:
        """fsync what was appended so far (also done every `fsync_interval` in the background)."""
        self._dirty.clear()
        retired, self._retired = self._retired, []
        sync_directory, self._directory_dirty = self._directory_dirty, False
        await asyncio.to_thread(self._sync, self._fd, retired, sync_directory)

    def _sync(self, fd: int, retired: list[int], sync_directory: bool) -> None:
        for old in retired:
            os.fsync(old)
            os.close(old)
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:  # EBADF: closed by close(), which fsyncs itself
                raise
        if sync_directory:
            _fsync_directory(self.directory)

    async def close(self) -> None:
        """Stop the flusher, fsync and close; waiting appends fail with RuntimeError."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._dirty.set()  # wake it; it finishes any fsync in progress, then returns
            await self._flusher
        for fd in [*self._retired, self._fd]:
            os.fsync(fd)
            os.close(fd)
        self._retired = []
        _fsync_directory(self.directory)
        async with self._space:
            self._space.notify_all()
        os.close(self._lock_fd)

    # -- recovery ------------------------------------------------------------------------------

    def _take_lock(self) -> int:
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DecisionLogBusy(
                    f"decision log {self.directory} is in use by another process; give every "
                    "worker its own directory (…/decision-log/worker-N)"
                ) from None
            raise
        return fd

    def _segments(self) -> list[int]:
        return sorted(
            int(match.group(1))
            for name in os.listdir(self.directory)
            if (match := _SEGMENT.match(name))
        )

    def _recover(self) -> _Position:
        ack = _read_ack(self.directory / ACK)
        segments = self._segments()
        for index in segments:
            if index < ack.segment:
                (self.directory / _segment_name(index)).unlink()
        segments = [index for index in segments if index >= ack.segment]
        if segments:
            self._truncate_torn_tail(self.directory / _segment_name(segments[-1]))
        if segments and segments[0] != ack.segment:
            ack = _Position(segments[0], 0)  # the acknowledged segment was already deleted
        for index in segments:
            path = self.directory / _segment_name(index)
            start = ack.offset if index == ack.segment else 0
            size = path.stat().st_size
            if start > size:  # the acknowledged tail was torn off: nothing there to ship
                ack, start = _Position(index, size), size
            self.backlog_bytes += size - start
            self.backlog += _count_lines(path, start)
        if self.backlog:
            logger.info(
                "decision log %s: %d records from a previous run still to ship",
                self.directory,
                self.backlog,
            )
        return ack

    def _truncate_torn_tail(self, path: Path) -> None:
        size = path.stat().st_size
        keep = _end_of_last_line(path, size)
        if keep < size:
            logger.warning(
                "decision log %s: dropping a torn last line (%d bytes) left by a crash mid-write",
                path,
                size - keep,
            )
            with path.open("r+b") as handle:
                handle.truncate(keep)
                os.fsync(handle.fileno())
            self.skipped += 1

    def _next_index(self) -> int:
        segments = self._segments()
        return max([self._ack.segment, *segments]) + 1 if segments else self._ack.segment + 1

    # -- shipping ------------------------------------------------------------------------------

    async def ship_forever(
        self,
        control_plane_url: str,
        token: str,
        *,
        batch: int = 1000,
        client: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
        idle_poll: float = 1.0,
    ) -> None:
        """Post batches in order until cancelled; retry with back-off until acknowledged."""
        if not 1 <= batch <= 1000:
            raise ValueError("batch must be between 1 and 1000 (the ingest limit)")
        url = control_plane_url.rstrip("/") + "/api/v1/decisions/ingest"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        http = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        retry = backoff or Backoff()
        self._batch_size = batch
        try:
            while True:
                self._new_data.clear()
                try:
                    outcome = await self._ship_one(http, url, headers)
                except OSError as exc:
                    self._ship_failed(f"cannot read or acknowledge {self.directory}: {exc}")
                    outcome = _Outcome.FAILED
                if outcome is _Outcome.IDLE:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._new_data.wait(), idle_poll)
                elif outcome is _Outcome.FAILED:
                    await retry.sleep()
                else:
                    retry.reset()
        finally:
            self._drop_prefetch()
            if self._persisting is not None:  # let an acknowledgement being written land
                with contextlib.suppress(OSError):
                    await self._settle()
            if client is None:
                await http.aclose()

    async def _ship_one(
        self, http: httpx.AsyncClient, url: str, headers: dict[str, str]
    ) -> _Outcome:
        pending = await self._next_batch()
        if pending is None:
            await self._settle()
            return _Outcome.IDLE
        if pending.lines:
            # While this batch is in flight: read the next one and (in `_settle`'s task)
            # persist the previous acknowledgement. Batches still go one at a time, in order.
            self._prefetch = asyncio.ensure_future(
                asyncio.to_thread(self._read_batch, pending.end, self._batch_size)
            )
            try:
                response = await http.post(url, content=_body(pending.lines), headers=headers)
            except httpx.HTTPError as exc:
                self._ship_failed(f"control plane unreachable at {url}: {exc!r}")
                return _Outcome.FAILED
            if response.status_code == 413 and self._batch_size > 1:
                self._batch_size = max(1, self._batch_size // 2)
                self._drop_prefetch()
                logger.warning("decision ingest: batch too large; now %d records", self._batch_size)
                return _Outcome.SHIPPED
            if response.status_code == 422:
                if len(pending.lines) > 1:
                    self._isolate(len(pending.lines), _describe(response))
                    return _Outcome.SHIPPED
                await asyncio.to_thread(self._reject, pending.lines[0], _describe(response))
            elif response.status_code != 200:
                self._ship_failed(_describe(response))
                return _Outcome.FAILED
            else:
                self._count_acknowledged(response, len(pending.lines))
            self._isolated(len(pending.lines))
        await self._settle()  # acknowledgements are persisted in order, one at a time
        self._sent = pending.end
        self._persisting = asyncio.ensure_future(self._persist(pending))
        return _Outcome.SHIPPED

    def _isolate(self, count: int, why: str) -> None:
        """A refused batch: send its records one by one to find the ones refused."""
        logger.warning(
            "decision ingest refused a batch of %d (%s); sending them one by one", count, why
        )
        self._drop_prefetch()
        if not self._isolating:
            self._full_batch = self._batch_size
        self._isolating, self._batch_size = count, 1

    def _isolated(self, count: int) -> None:
        if self._isolating:
            self._isolating = max(0, self._isolating - count)
            if not self._isolating:
                self._batch_size = self._full_batch

    def _reject(self, line: bytes, why: str) -> None:
        """Keep a record the control plane refuses as invalid beside the log and move on:
        one bad record must not stop every later decision from shipping (in a thread)."""
        path = self.directory / REJECTED
        with path.open("ab") as handle:
            handle.write(line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.rejected += 1
        logger.error(
            "decision ingest refused a record as invalid (%s); kept in %s, shipping goes on",
            why,
            path,
        )

    async def _next_batch(self) -> _Batch | None:
        """The batch after the last acknowledged one: prefetched if that read still fits."""
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None:
            batch = await prefetch
            if batch is not None and batch.start == self._sent:
                return batch
        return await asyncio.to_thread(self._read_batch, self._sent, self._batch_size)

    def _drop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.cancel()  # the thread finishes its read; the result is unused
            self._prefetch = None

    async def _persist(self, batch: _Batch) -> None:
        await asyncio.to_thread(self._acknowledge, batch)
        await self._release_space(batch)

    async def _settle(self) -> None:
        """Wait for the acknowledgement being persisted; if that failed, resend from the
        last persisted position (the control plane drops what it already holds)."""
        persisting, self._persisting = self._persisting, None
        if persisting is None:
            return
        try:
            await persisting
        except OSError:
            self._sent = self._ack
            self._drop_prefetch()
            raise

    def _read_batch(self, start: _Position, limit: int) -> _Batch | None:
        """The next run of complete lines from `start` (in a thread)."""
        sealed = start.segment < self._segment  # read before the file: a sealed one is final
        path = self.directory / _segment_name(start.segment)
        lines: list[bytes] = []
        consumed = skipped = 0
        offset = start.offset
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            handle = None
        if handle is not None:
            with handle:
                handle.seek(offset)
                while len(lines) < limit and offset - start.offset < _MAX_BATCH_BYTES:
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        if line and sealed:  # a torn line can only be final in a sealed file
                            offset += len(line)
                            consumed += 1
                            skipped += 1
                        break
                    offset += len(line)
                    consumed += 1
                    if _is_record(line):
                        lines.append(line[:-1])
                    else:
                        skipped += 1
        end = _Position(start.segment, offset)
        if consumed == 0:
            if not sealed:
                return None
            later = [index for index in self._segments() if index > start.segment]
            end = _Position(later[0] if later else self._segment, 0)
        return _Batch(start, end, lines, consumed, offset - start.offset, skipped)

    def _acknowledge(self, batch: _Batch) -> None:
        write_atomically(
            self.directory / ACK,
            json.dumps({"segment": batch.end.segment, "offset": batch.end.offset}).encode(),
        )
        self._ack = batch.end
        for index in self._segments():
            if index < batch.end.segment:
                (self.directory / _segment_name(index)).unlink(missing_ok=True)
        if batch.skipped:
            self.skipped += batch.skipped
            logger.warning(
                "decision log %s: skipped %d unreadable lines in segment %d",
                self.directory,
                batch.skipped,
                batch.start.segment,
            )

    async def _release_space(self, batch: _Batch) -> None:
        self.backlog -= batch.consumed_records
        self.backlog_bytes -= batch.consumed_bytes
        async with self._space:
            if self.backlog_bytes < self.max_backlog_bytes:
                if self._episode:
                    logger.info("decision log %s: back-pressure over", self.directory)
                self._episode = False
                self._space.notify_all()

    def _count_acknowledged(self, response: httpx.Response, sent: int) -> None:
        self.last_shipped = datetime.now(UTC)
        self.last_error = None
        self.shipped += sent
        try:
            body = response.json()
            accepted, duplicates = int(body["accepted"]), int(body["duplicates"])
        except (ValueError, KeyError, TypeError):
            logger.warning("decision ingest: 200 without {accepted, duplicates}; counted as sent")
            self.accepted += sent
            return
        self.accepted += accepted
        self.duplicates += duplicates
        if accepted + duplicates != sent:
            logger.warning(
                "decision ingest acknowledged %d of %d records sent", accepted + duplicates, sent
            )

    def _ship_failed(self, message: str) -> None:
        self.failures += 1
        self.last_error = message
        logger.warning("decision log shipping: %s; retrying", message)


def _describe(response: httpx.Response) -> str:
    if response.status_code in (401, 403):
        return credential_refused_message(response.status_code, "shipping decisions")
    try:
        error = response.json().get("error", {})
        message = f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        message = response.text[:200]
    return f"ingest answered HTTP {response.status_code} ({message})"


def _body(lines: list[bytes]) -> bytes:
    return b'{"decisions":[' + b",".join(lines) + b"]}"


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _read_ack(path: Path) -> _Position:
    try:
        stored = json.loads(path.read_bytes())
        position = _Position(int(stored["segment"]), int(stored["offset"]))
    except FileNotFoundError:
        return _Position(0, 0)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # Without a trustworthy position, resend everything: ingest drops the duplicates.
        logger.warning("decision log %s is unreadable (%s); shipping from the start", path, exc)
        return _Position(0, 0)
    if position.segment < 0 or position.offset < 0:
        return _Position(0, 0)
    return position


def _count_lines(path: Path, start: int) -> int:
    count = 0
    with path.open("rb") as handle:
        handle.seek(start)
        while chunk := handle.read(MiB):
            count += chunk.count(b"\n")
    return count


def _end_of_last_line(path: Path, size: int) -> int:
    """The offset just after the last newline (0 when there is none)."""
    with path.open("rb") as handle:
        position = size
        while position > 0:
            step = min(64 * 1024, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step)
            newline = chunk.rfind(b"\n")
            if newline != -1:
                return position + newline + 1
    return 0


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
