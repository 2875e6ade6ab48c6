"""One Redis script call for many waiting requests (the sidecar's hot-path writes).

A worker under load has many checks in flight. Each needs a Redis write (a budget
reservation, a reservation record for `/settle`), and one round trip per write costs
more than the decision itself in redis-py. `ScriptBatch.call(keys, args)` queues the
write; while no call is in flight the queue goes at once, otherwise everything that
queued meanwhile goes together in the next call. At low load that is one call per
request, as before; at saturation one call serves dozens. Order is kept: items run in
the order they were queued, inside one atomic script. `submit` queues a write nobody
waits for (no future, no task per request); `idle()` waits until it has been sent.

A submitted write may linger: `submit(..., linger=s)` sends it within `s` seconds instead
of at once, together with whatever else queued meanwhile, and at once when a `call` or
`idle()` comes first (order is kept either way). Nobody waits for such a write, so this
only moves the Redis work out of the moments right after an answer, when the gateway's
request is still on its way through Envoy and the machine's cores are wanted for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["NO_RETRY", "BatchUnavailableError", "ScriptBatch"]

log = logging.getLogger(__name__)

# For the client a batch uses: a retried reservation could be counted twice, and redis-py's
# default retries (with back-off) would keep a batch waiting on a Redis that refuses.
NO_RETRY = Retry(NoBackoff(), 0)

_MAX_ITEMS = 256  # requests per script call: Redis runs a script without interleaving
_BREAKER_SECONDS = 1.0


class BatchUnavailableError(Exception):
    """Redis cannot be reached (now, or within the last second); the message says how."""


@dataclass(slots=True)
class _Item:
    keys: Sequence[str]
    args: Sequence[bytes | str | int | float]
    future: asyncio.Future[list[Any]] | None  # None: submitted, nobody waits


class ScriptBatch:
    """Queue `(keys, args)` items for `script`, which takes every queued item's keys in
    KEYS and `args_per_key` arguments per key in ARGV, and returns one value per key."""

    def __init__(
        self,
        client: aioredis.Redis,
        script: str,
        *,
        args_per_key: int,
        timeout: float = 0.5,
        what: str = "write",
    ) -> None:
        self._pool = client.connection_pool
        self._body = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()  # its id
        # One call in flight at a time, so one connection of its own, held: no pool
        # round trip per call (redis-py's client layer costs more than the call).
        self._connection: AbstractConnection | None = None
        self._args_per_key = args_per_key
        self._timeout = timeout
        self._what = what  # names a submitted write that failed, in the log
        self._queue: list[_Item] = []
        self._flushing: asyncio.Task[None] | None = None
        self._lingering: asyncio.TimerHandle | None = None  # a flush due for lingering writes
        self._down_until = 0.0
        self.items = 0  # calls queued
        self.calls = 0  # script calls sent for them

    async def call(
        self, keys: Sequence[str], args: Sequence[bytes | str | int | float]
    ) -> list[Any]:
        """The script's values for `keys` (in order) once the batch holding them has run."""
        if not self._admit(keys, args):
            return []
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._enqueue(_Item(keys, args, future))
        return await future

    def submit(
        self, keys: Sequence[str], args: Sequence[bytes | str | int | float], linger: float = 0.0
    ) -> None:
        """Queue a write nobody waits for, sent within `linger` seconds (or sooner, with the
        next call); a failure is logged (WARNING) naming `what`."""
        if not self._admit(keys, args):
            return
        if linger <= 0 or self._flushing is not None:
            self._enqueue(_Item(keys, args, None))
            return
        self._queue.append(_Item(keys, args, None))
        self.items += 1
        if self._lingering is None:
            self._lingering = asyncio.get_running_loop().call_later(linger, self._flush_now)

    async def idle(self) -> None:
        """Return once everything queued so far has been sent (or has failed)."""
        self._flush_now()
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    def _flush_now(self) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        if self._flushing is None and self._queue:
            self._flushing = asyncio.create_task(self._flush())

    def _admit(self, keys: Sequence[str], args: Sequence[bytes | str | int | float]) -> bool:
        if len(args) != len(keys) * self._args_per_key:
            raise ValueError(f"{len(keys)} keys need {len(keys) * self._args_per_key} args")
        if time.monotonic() < self._down_until:
            raise BatchUnavailableError("it failed within the last second; retrying shortly")
        return bool(keys)

    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        self.items += 1
        if self._flushing is None:
            self._flush_now()

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:_MAX_ITEMS], self._queue[_MAX_ITEMS:]
                await self._send(batch)
        finally:
            self._flushing = None

    async def _send(self, batch: list[_Item]) -> None:
        keys: list[str] = []
        args: list[bytes | str | int | float] = []
        for item in batch:
            keys += item.keys
            args += item.args
        self.calls += 1
        try:
            async with asyncio.timeout(self._timeout):
                values = await self._execute(keys, args)
            if not isinstance(values, list) or len(values) != len(keys):
                raise redis.ResponseError(f"script answered {values!r:.64} for {len(keys)} keys")
        except (redis.TimeoutError, TimeoutError):
            # Slow, not gone (a busy machine delays the event loop too): this batch fails
            # closed, the next one tries again.
            self._fail(batch, BatchUnavailableError(f"no answer within {self._timeout:g} s"))
            return
        except (redis.ConnectionError, OSError) as exc:
            self._down_until = time.monotonic() + _BREAKER_SECONDS
            self._fail(batch, BatchUnavailableError(str(exc) or type(exc).__name__))
            return
        except Exception as exc:  # e.g. a script error: every waiting request sees it
            self._fail(batch, exc)
            return
        start = 0
        for item in batch:
            if item.future is not None and not item.future.done():  # cancelled: it stands
                item.future.set_result(values[start : start + len(item.keys)])
            start += len(item.keys)

    def _fail(self, batch: list[_Item], error: Exception) -> None:
        unwaited = 0
        for item in batch:
            if item.future is None:
                unwaited += 1
            elif not item.future.done():
                item.future.set_exception(error)
        if unwaited:
            log.warning("%d %s(s) not written to Redis: %s", unwaited, self._what, error)

    async def _execute(self, keys: list[str], args: list[bytes | str | int | float]) -> Any:
        if self._connection is None:
            self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        connection = self._connection
        try:
            await connection.send_packed_command(_resp("EVALSHA", self._sha, len(keys), keys, args))
            try:
                return await connection.read_response()
            except redis.exceptions.NoScriptError:  # a new or flushed server: send the body
                await connection.send_packed_command(
                    _resp("EVAL", self._body, len(keys), keys, args)
                )
                return await connection.read_response()
        except redis.ResponseError:
            raise  # an answer: the connection is in step
        except BaseException:  # mid-call (a timeout too): its state is unknown, so reconnect
            await connection.disconnect(nowait=True)
            raise


def _resp(
    command: str,
    script: str,
    count: int,
    keys: Sequence[str],
    args: Sequence[bytes | str | int | float],
) -> bytes:
    """The command as RESP (an array of bulk strings), packed in one pass: redis-py's
    general `pack_command` was a visible share of a check's CPU."""
    parts = [b"*%d\r\n" % (3 + len(keys) + len(args))]
    for item in (command, script, count, *keys, *args):
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
