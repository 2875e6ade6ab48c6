"""After every call: settle the real cost with the sidecar and record the execution.

`ExecutionRecorder` buffers records in memory and ships them in batches to the control
plane's `POST /api/v1/executions/ingest` (gateway credential), retrying with backoff until
a 200 acknowledges them; ingest is idempotent by `id`, so a resend after a lost answer is
harmless. After the first record of a quiet spell it waits `linger` seconds (0.1 s) for
more, so a busy gateway makes one ingest call per batch, not one per call. `Settler` posts
`{decision_id, actual: {cost_usd, tokens, executions}}` to the sidecar's `/settle` in the
background, so neither ever delays the caller's answer.

Both talk only to the operator's own services (URLs from the gateway's settings, never a
tenant's), over one pooled aiohttp session (`OperatorSession`): a quarter of httpx's CPU
per request here, and /settle is one request per gateway call. A batch is encoded with
orjson straight from the records (no `asdict` copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import orjson
from policy.runtime import tracing

log = logging.getLogger(__name__)
SETTLE_TIMEOUT = aiohttp.ClientTimeout(total=5.0)
INGEST_TIMEOUT = aiohttp.ClientTimeout(total=10.0)


class OperatorSession:
    """One keep-alive aiohttp session for the operator's services (sidecar, control plane).

    Made on first use, inside the running loop (aiohttp binds a session to its loop).
    Not for tenant-controlled URLs: those go through the outbound guard
    (`policy.net.outbound_aiohttp.GuardedSession`)."""

    def __init__(self, limit: int = 500) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109  (aiohttp's per-request timeouts)
    ) -> int:
        """POST `body`, read the answer, return its status; aiohttp's errors propagate."""
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        async with session.post(url, data=body, headers=headers, timeout=timeout) as response:
            await response.read()
            return response.status

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class Execution:
    id: str
    time: str
    principal: str
    kind: Literal["agent", "pipeline"]
    name: str
    channel: str
    status: Literal["succeeded", "failed"]
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    error: str | None
    decision_id: str | None

    @classmethod
    def new(cls, **fields: Any) -> Execution:
        return cls(
            id=uuid.uuid4().hex, time=datetime.now(UTC).isoformat().replace("+00:00", "Z"), **fields
        )


class ExecutionRecorder:
    def __init__(
        self,
        control_plane_url: str,
        token: str,
        session: OperatorSession,
        *,
        batch: int = 500,
        capacity: int = 100_000,
        max_backoff: float = 30.0,
        linger: float = 0.1,
        path: str = "/api/v1/executions/ingest",  # a shared gateway: its organisation's
    ) -> None:
        self._url = control_plane_url.rstrip("/") + path
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self._session = session
        self._batch = batch
        self._buffer: deque[Execution] = deque()
        self._capacity = capacity
        self._max_backoff = max_backoff
        self._linger = linger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # With traces on: the span of the call each buffered record came from (by id), so
        # the ingest joins that call's trace (policy/runtime/tracing.py batch_span).
        self._spans: dict[str, Any] = {}
        self.dropped = 0
        self.shipped = 0
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    def record(self, execution: Execution) -> None:
        if len(self._buffer) >= self._capacity:
            self._spans.pop(self._buffer.popleft().id, None)
            self.dropped += 1
            log.error("execution buffer full (%d); dropped the oldest record", self._capacity)
        self._buffer.append(execution)
        if tracing.ENABLED:
            self._spans[execution.id] = tracing.current_span_context()
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="execution-shipper")

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop the shipper, then ship what is buffered (for up to `drain_seconds`). The
        shipper goes first: two flushes of one batch at once would both pop it (a batch
        cut mid-send is sent again; the ingest counts it as duplicates)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline = time.monotonic() + drain_seconds
        while self._buffer and time.monotonic() < deadline:
            if not await self.flush():
                await asyncio.sleep(0.2)
        if self._buffer:
            log.error("stopping with %d executions not acknowledged", len(self._buffer))

    async def flush(self) -> bool:
        """Send one batch; True when acknowledged (or nothing to send)."""
        if not self._buffer:
            return True
        batch = [self._buffer[i] for i in range(min(self._batch, len(self._buffer)))]
        spans = (self._spans.get(e.id) for e in batch)
        with tracing.batch_span("POST executions ingest", spans, **{"kaizen.records": len(batch)}):
            body = orjson.dumps({"executions": batch})  # a dataclass encodes as its fields
            headers = tracing.inject(dict(self._headers)) if tracing.ENABLED else self._headers
            try:
                status = await self._session.post(self._url, body, headers, INGEST_TIMEOUT)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}"
                return False
            tracing.set_status(status)
        if status != 200:
            self.last_error = f"HTTP {status}"
            return False
        for _ in batch:
            self._spans.pop(self._buffer.popleft().id, None)
        self.shipped += len(batch)
        self.last_error = None
        return True

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            if not self._buffer:
                self._wake.clear()
                await self._wake.wait()
                if self._linger > 0:  # gather the records of the calls arriving meanwhile
                    await asyncio.sleep(self._linger)
            if await self.flush():
                backoff = 0.5
                continue
            log.warning(
                "executions ingest failed (%s); retrying in %.1f s", self.last_error, backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)


class Settler:
    """Reports the real cost of an allowed call to the sidecar's budget counters."""

    def __init__(
        self, sidecar_url: str, token: str, session: OperatorSession, attempts: int = 3
    ) -> None:
        self._url = sidecar_url.rstrip("/") + "/settle"
        # The sidecar's /settle moves budget counters: only the gateway may call it.
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self._attempts = attempts
        self._tasks: set[asyncio.Task[None]] = set()
        self._session = session

    def settle(self, decision_id: str, actual: dict[str, float]) -> None:
        task = asyncio.create_task(self._send(decision_id, actual))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle_now(self, decision_id: str, actual: dict[str, float]) -> None:
        await self._send(decision_id, actual)

    async def _post(self, body: bytes) -> int:
        if not tracing.ENABLED:
            return await self._session.post(self._url, body, self._headers, SETTLE_TIMEOUT)
        # The settle task was made inside the call, so this span is in the call's trace.
        with tracing.client_span("POST sidecar settle"):
            headers = tracing.inject(dict(self._headers))
            status = await self._session.post(self._url, body, headers, SETTLE_TIMEOUT)
            tracing.set_status(status)
            return status

    async def _send(self, decision_id: str, actual: dict[str, float]) -> None:
        body = orjson.dumps({"decision_id": decision_id, "actual": actual})
        for attempt in range(self._attempts):
            try:
                status = await self._post(body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("settle %s: sidecar unreachable (%s)", decision_id, type(exc).__name__)
            else:
                # 404: no reservation (no budget applied to the call): nothing to settle.
                if status in (204, 200, 404):
                    return
                if status < 500:
                    log.error("settle %s refused: HTTP %d", decision_id, status)
                    return
            await asyncio.sleep(0.2 * 2**attempt)
        log.error("settle %s failed after %d attempts", decision_id, self._attempts)

    async def stop(self) -> None:
        """Wait (up to 5 s) for the settles under way; the session is its owner's to close."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
