"""The decision buffer: mask at source, append to local NDJSON segments, survive crashes.

`append` writes the record's line with one `os.write` before it returns, so a killed
process loses nothing it appended (the page cache survives the process); a background
task fsyncs every `fsync_interval` for power loss. The shipper (`shipper.py`) reads
batches after the acknowledged position and has them acknowledged here: the position is
persisted (`ack.json`, replaced atomically) and fully acknowledged segments are deleted.

One directory per worker process (`…/decision-log/worker-N`): an exclusive lock on it
refuses a second writer. When the unacknowledged backlog reaches `max_backlog_bytes`,
`append` waits for the shipper (back-pressure) rather than dropping a decision.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authz_sidecar.decision_log.records import encode_line, is_record, parse_mask
from authz_sidecar.decision_log.segments import (
    ACK,
    Batch,
    MiB,
    Position,
    count_lines,
    end_of_last_line,
    fsync_directory,
    read_ack,
    segment_name,
)
from authz_sidecar.decision_log.shipper import INGEST_PATH, Shipper
from policy.bundles.bundle_store import write_atomically

if TYPE_CHECKING:
    import httpx

    from policy.bundles.bundle_sync import Backoff

logger = logging.getLogger(__name__)

# Records the control plane refused as invalid (422), one by one: kept here, never dropped.
REJECTED = "rejected.ndjson"
_LOCK = ".lock"
_SEGMENT = re.compile(r"^(\d{20})\.ndjson$")
_MAX_BATCH_BYTES = 8 * MiB  # one ingest request stays well under any sane body limit


class DecisionBufferBusy(RuntimeError):
    """Another process holds this decision-log directory."""


class DecisionBuffer:
    """A crash-safe local buffer of decision records, drained by `ship_forever`."""

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
        self._masks = parse_mask(mask)
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
        self._space = asyncio.Condition()
        self.new_data = asyncio.Event()  # set by every append: wakes an idle shipper
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

    @property
    def acknowledged(self) -> Position:
        """The persisted acknowledged position: where a restart resumes."""
        return self._ack

    # -- appending ---------------------------------------------------------------------------

    def encode(self, record: dict[str, Any]) -> bytes:
        """The masked NDJSON line for `record` (the caller's dict is left as it was)."""
        return encode_line(record, self._masks)

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
        self.new_data.set()
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
            self.directory / segment_name(index),
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
            fsync_directory(self.directory)

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
        fsync_directory(self.directory)
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
                raise DecisionBufferBusy(
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

    def _recover(self) -> Position:
        ack = read_ack(self.directory / ACK)
        segments = self._segments()
        for index in segments:
            if index < ack.segment:
                (self.directory / segment_name(index)).unlink()
        segments = [index for index in segments if index >= ack.segment]
        if segments:
            self._truncate_torn_tail(self.directory / segment_name(segments[-1]))
        if segments and segments[0] != ack.segment:
            ack = Position(segments[0], 0)  # the acknowledged segment was already deleted
        for index in segments:
            path = self.directory / segment_name(index)
            start = ack.offset if index == ack.segment else 0
            size = path.stat().st_size
            if start > size:  # the acknowledged tail was torn off: nothing there to ship
                ack, start = Position(index, size), size
            self.backlog_bytes += size - start
            self.backlog += count_lines(path, start)
        if self.backlog:
            logger.info(
                "decision log %s: %d records from a previous run still to ship",
                self.directory,
                self.backlog,
            )
        return ack

    def _truncate_torn_tail(self, path: Path) -> None:
        size = path.stat().st_size
        keep = end_of_last_line(path, size)
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

    def reject(self, line: bytes, why: str) -> None:
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

    def read_batch(self, start: Position, limit: int) -> Batch | None:
        """The next run of complete lines from `start` (in a thread)."""
        sealed = start.segment < self._segment  # read before the file: a sealed one is final
        path = self.directory / segment_name(start.segment)
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
                    if is_record(line):
                        lines.append(line[:-1])
                    else:
                        skipped += 1
        end = Position(start.segment, offset)
        if consumed == 0:
            if not sealed:
                return None
            later = [index for index in self._segments() if index > start.segment]
            end = Position(later[0] if later else self._segment, 0)
        return Batch(start, end, lines, consumed, offset - start.offset, skipped)

    def acknowledge(self, batch: Batch) -> None:
        write_atomically(
            self.directory / ACK,
            json.dumps({"segment": batch.end.segment, "offset": batch.end.offset}).encode(),
        )
        self._ack = batch.end
        for index in self._segments():
            if index < batch.end.segment:
                (self.directory / segment_name(index)).unlink(missing_ok=True)
        if batch.skipped:
            self.skipped += batch.skipped
            logger.warning(
                "decision log %s: skipped %d unreadable lines in segment %d",
                self.directory,
                batch.skipped,
                batch.start.segment,
            )

    async def release_space(self, batch: Batch) -> None:
        self.backlog -= batch.consumed_records
        self.backlog_bytes -= batch.consumed_bytes
        async with self._space:
            if self.backlog_bytes < self.max_backlog_bytes:
                if self._episode:
                    logger.info("decision log %s: back-pressure over", self.directory)
                self._episode = False
                self._space.notify_all()

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
        in_flight: int = 2,
        compress: bool = True,
        path: str = INGEST_PATH,
        linger: float = 0.25,
        ack_interval: float = 1.0,
    ) -> None:
        """Post batches until cancelled; retry with back-off until acknowledged (`Shipper`)."""
        shipper = Shipper(
            self,
            control_plane_url,
            token,
            batch=batch,
            client=client,
            backoff=backoff,
            in_flight=in_flight,
            compress=compress,
            path=path,
            linger=linger,
            ack_interval=ack_interval,
        )
        await shipper.run(idle_poll)
