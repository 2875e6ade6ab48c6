"""Shipping a `DecisionBuffer` to `/api/v1/decisions/ingest` until acknowledged.

Batches are read in order after the acknowledged position and posted gzip-compressed
(`Content-Encoding: gzip`; plain once a control plane answers that it cannot read the body
as sent). Up to `in_flight` requests are out at once (default 2: the control plane
parses the next batch while PostgreSQL stores the last), but answers are taken in order:
the acknowledged position moves past a batch only after a 200 for it and for every batch
before it, and is persisted by the buffer (in a background task, so neither disk nor
fsync waits sit between two requests). Anything but a 200 cancels the requests behind it
and resends from the first unacknowledged batch; ingest is idempotent by `decision_id`,
so what was stored meanwhile comes back as duplicates, never twice. Two batches in flight
may reach the organisation's hash chain in either order.

A 413 halves the batch; a 422 for a batch sends its records one by one and keeps each one
refused beside the log (`REJECTED`); any other failure is retried with back-off.

`linger`: a batch that is not full is posted only once `linger` seconds have passed since
the previous post (a lone record after a quiet spell goes at once; a backlog of full
batches goes without waiting; records that fill a batch while it lingers wait out the
linger, which is short). Each post costs a
thread hop, a gzip stream, an HTTP request and an fsync'd acknowledgement; without it a
sidecar answering thousands of checks a second posted batches of a dozen records, and
shipping cost more CPU than the decisions. Records wait on disk meanwhile, so nothing is
at risk; shipping lags by at most `linger`.

`ack_interval`: the acknowledged position is persisted (a file written and fsync'd twice)
at most once per `ack_interval` seconds, at once when a segment can be deleted or a batch
skipped unreadable lines, and when shipping stops. After a crash the records acknowledged
since come again and the control plane counts them as duplicates (ingest is idempotent by
`decision_id`); nothing is lost, and the disk holds at most that much more.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from authz_sidecar.decision_log.records import body
from authz_sidecar.decision_log.segments import Batch, Position
from policy.bundles.bundle_sync import Backoff, credential_refused_message

if TYPE_CHECKING:
    from authz_sidecar.decision_log.buffer import DecisionBuffer

logger = logging.getLogger(__name__)

MAX_BATCH = 1000  # the ingest limit


class Outcome(enum.Enum):
    IDLE = "idle"
    LINGER = "linger"  # a partial batch waits for more records (or for `linger` to pass)
    SHIPPED = "shipped"
    FAILED = "failed"


_Request = asyncio.Future[httpx.Response | None]


# A shared platform gateway ships each organisation's records to
# /api/v1/platform/organizations/{org}/decisions/ingest instead (authz_sidecar/tenant_logs.py).
INGEST_PATH = "/api/v1/decisions/ingest"


class Shipper:
    """Drains one buffer: reads, posts, takes answers in order, moves the acknowledgement."""

    def __init__(
        self,
        buffer: DecisionBuffer,
        control_plane_url: str,
        token: str,
        *,
        batch: int = MAX_BATCH,
        client: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
        in_flight: int = 2,
        compress: bool = True,
        path: str = INGEST_PATH,
        linger: float = 0.0,
        ack_interval: float = 0.0,
    ) -> None:
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be between 1 and {MAX_BATCH} (the ingest limit)")
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self.buffer = buffer
        self.url = control_plane_url.rstrip("/") + path
        self._token = token
        self._client = client
        self._retry = backoff or Backoff()
        self._batch_size = self._full_batch = batch
        self._isolating = 0  # records still to send one by one after a refused batch
        self._in_flight = in_flight
        self.compress = compress
        self._sent = buffer.acknowledged  # acknowledged by the control plane, maybe not persisted
        self._queued = self._sent  # where the next batch to post starts
        self._window: deque[tuple[Batch, _Request]] = deque()  # posted, answers not yet taken
        self._persisting: asyncio.Future[None] | None = None
        self._releasing = 0  # records of the batch whose acknowledgement is being persisted
        self._linger = linger
        self._last_post = float("-inf")  # loop time of the last post
        self._ack_interval = ack_interval
        self._persisted_at = float("-inf")  # loop time the acknowledgement was last written
        self._unpersisted: Batch | None = None  # acknowledged since, not yet written

    async def run(self, idle_poll: float = 1.0) -> None:
        """Ship until cancelled."""
        http = self._client or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        try:
            while True:
                self.buffer.new_data.clear()
                try:
                    outcome = await self._step(http)
                except OSError as exc:
                    self._failed(f"cannot read or acknowledge {self.buffer.directory}: {exc}")
                    outcome = Outcome.FAILED
                if outcome is Outcome.IDLE:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.buffer.new_data.wait(), idle_poll)
                elif outcome is Outcome.LINGER:
                    await asyncio.sleep(self._lingering())
                elif outcome is Outcome.FAILED:
                    await self._retry.sleep()
                else:
                    self._retry.reset()
        finally:
            pending = [request for _, request in self._window]
            self._rewind(self._sent)
            await asyncio.gather(*pending, return_exceptions=True)
            if self._persisting is not None:  # let an acknowledgement being written land
                with contextlib.suppress(OSError):
                    await self._settle()
            if self._unpersisted is not None:  # and write the last one held back
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self.buffer.acknowledge, self._unpersisted)
            if self._client is None:
                await http.aclose()

    async def _step(self, http: httpx.AsyncClient) -> Outcome:
        await self._fill(http)
        if not self._window:
            await self._settle()
            return Outcome.LINGER if self._lingering() else Outcome.IDLE
        batch, request = self._window.popleft()
        try:
            response = await request
        except httpx.HTTPError as exc:
            self._rewind(batch.start)
            self._failed(f"control plane unreachable at {self.url}: {exc!r}")
            return Outcome.FAILED
        if response is not None:  # None: only unreadable lines, nothing was sent
            refused = await self._answered(batch, response)
            if refused is not None:
                return refused
        await self._settle()  # acknowledgements are persisted in order, one at a time
        self._sent = batch.end
        self._releasing = batch.consumed_records
        self._persisting = asyncio.ensure_future(self._persist(batch))
        return Outcome.SHIPPED

    def _lingering(self) -> float:
        """Seconds a partial batch should still wait before it is posted (0: post now)."""
        if not self._linger or self._isolating:
            return 0.0
        in_window = sum(batch.consumed_records for batch, _ in self._window)
        unposted = self.buffer.backlog - in_window - self._releasing
        if unposted <= 0 or unposted >= self._batch_size:
            return 0.0  # nothing to post (idle), or a full batch: at once
        return max(0.0, self._last_post + self._linger - asyncio.get_running_loop().time())

    async def _fill(self, http: httpx.AsyncClient) -> None:
        """Read and post batches until `in_flight` are out (one while isolating)."""
        depth = 1 if self._isolating else self._in_flight
        while len(self._window) < depth and not self._lingering():
            read = await asyncio.to_thread(self._read, self._queued, self._batch_size)
            if read is None:
                return
            batch, content = read
            self._queued = batch.end
            request: _Request
            if batch.lines:
                self._last_post = asyncio.get_running_loop().time()
                request = asyncio.ensure_future(self._post(http, content))
            else:
                request = asyncio.get_running_loop().create_future()
                request.set_result(None)
            self._window.append((batch, request))

    def _read(self, start: Position, limit: int) -> tuple[Batch, bytes] | None:
        """The next batch and its request body (in a thread: compressing takes a few ms)."""
        batch = self.buffer.read_batch(start, limit)
        if batch is None:
            return None
        return batch, body(batch.lines, compress=self.compress) if batch.lines else b""

    async def _post(self, http: httpx.AsyncClient, content: bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        if content[:2] == b"\x1f\x8b":  # the gzip magic: `body` compressed it
            headers["Content-Encoding"] = "gzip"
        return await http.post(self.url, content=content, headers=headers)

    async def _answered(self, batch: Batch, response: httpx.Response) -> Outcome | None:
        """None when `batch` is done with (acknowledged, or its one record kept as refused);
        else what to do, the requests behind it cancelled."""
        status = response.status_code
        if status == 200:
            self._count(response, len(batch.lines))
            self._isolated(len(batch.lines))
            return None
        if status == 422 and self.compress and _names_the_body(response):
            self.compress = False
            logger.warning(
                "decision ingest cannot read compressed batches (%s); sending them plain",
                describe(response),
            )
        elif status == 413 and self._batch_size > 1:
            self._batch_size = max(1, self._batch_size // 2)
            logger.warning("decision ingest: batch too large; now %d records", self._batch_size)
        elif status == 422 and len(batch.lines) > 1:
            self._isolate(len(batch.lines), describe(response))
        elif status == 422:
            await asyncio.to_thread(self.buffer.reject, batch.lines[0], describe(response))
            self._isolated(1)
            return None
        else:
            self._rewind(batch.start)
            self._failed(describe(response))
            return Outcome.FAILED
        self._rewind(batch.start)
        return Outcome.SHIPPED

    def _rewind(self, to: Position) -> None:
        """Cancel the requests out and read again from `to` (the control plane drops what
        it already holds)."""
        for _, request in self._window:
            request.cancel()
        self._window.clear()
        self._queued = to

    def _isolate(self, count: int, why: str) -> None:
        """A refused batch: send its records one by one to find the ones refused."""
        logger.warning(
            "decision ingest refused a batch of %d (%s); sending them one by one", count, why
        )
        if not self._isolating:
            self._full_batch = self._batch_size
        self._isolating, self._batch_size = count, 1

    def _isolated(self, count: int) -> None:
        if self._isolating:
            self._isolating = max(0, self._isolating - count)
            if not self._isolating:
                self._batch_size = self._full_batch

    async def _persist(self, batch: Batch) -> None:
        now = asyncio.get_running_loop().time()
        if (
            now - self._persisted_at >= self._ack_interval
            or batch.end.segment > self.buffer.acknowledged.segment  # a segment to delete
            or batch.skipped
        ):
            await asyncio.to_thread(self.buffer.acknowledge, batch)
            self._persisted_at, self._unpersisted = now, None
        else:
            self._unpersisted = batch
        await self.buffer.release_space(batch)
        self._releasing = 0

    async def _settle(self) -> None:
        """Wait for the acknowledgement being persisted; if that failed, resend from the
        last persisted position."""
        persisting, self._persisting = self._persisting, None
        if persisting is None:
            return
        try:
            await persisting
        except OSError:
            self._sent = self.buffer.acknowledged
            self._rewind(self._sent)
            raise

    def _count(self, response: httpx.Response, sent: int) -> None:
        log = self.buffer
        log.last_shipped = datetime.now(UTC)
        log.last_error = None
        log.shipped += sent
        try:
            answer = response.json()
            accepted, duplicates = int(answer["accepted"]), int(answer["duplicates"])
        except (ValueError, KeyError, TypeError):
            logger.warning("decision ingest: 200 without {accepted, duplicates}; counted as sent")
            log.accepted += sent
            return
        log.accepted += accepted
        log.duplicates += duplicates
        if accepted + duplicates != sent:
            logger.warning(
                "decision ingest acknowledged %d of %d records sent", accepted + duplicates, sent
            )

    def _failed(self, message: str) -> None:
        self.buffer.failures += 1
        self.buffer.last_error = message
        logger.warning("decision log shipping: %s; retrying", message)


def describe(response: httpx.Response) -> str:
    if response.status_code in (401, 403):
        return credential_refused_message(response.status_code, "shipping decisions")
    try:
        error = response.json().get("error", {})
        message = f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        message = response.text[:200]
    return f"ingest answered HTTP {response.status_code} ({message})"


def _names_the_body(response: httpx.Response) -> bool:
    """A 422 about the request body as a whole (`field: body`, e.g. "not JSON"), which a
    control plane that does not decompress gives for a gzip body."""
    try:
        details = response.json()["error"]["details"]
        return any(detail.get("field") == "body" for detail in details)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
