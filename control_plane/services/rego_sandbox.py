"""Tenant Rego runs in a small pool of worker processes, each task under a time and a
memory limit, with a bounded share of the pool per organisation.

Why processes: rego-cpp evaluates in C++ without yielding, so a thread cannot be stopped
and one rule over `numbers.range(1, 1e9)` would hold a core (and the GIL-free C++ heap)
for as long as it likes. A worker that runs past `timeout_seconds` is killed (SIGKILL)
and replaced; one whose memory passes `memory_mb` dies on its own allocation failure (an
address-space limit, `RLIMIT_AS`) and is replaced. Either way the caller gets a 422
naming the limit, and since the caller's transaction is rolled back, nothing is written.

`RLIMIT_AS` is set after the worker has imported regopy: rego-cpp's allocator (snmalloc)
reserves 256 GB of address space when it loads and aborts if it cannot, so the limit is
that baseline plus `memory_mb`, which bounds what evaluation can add.

Workers are fresh interpreters (`python -c`, not a fork: the control plane runs threads and
an event loop, and not multiprocessing's spawn, which would re-run the server's main
module) talking pickles over a socket pair; they say when they are ready, so a worker's
start-up never counts against a task's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import logging
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from control_plane.errors import Invalid, KaizenError, RateLimited, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
_READY = "ready"
# A reply larger than this is refused before it is read into the control plane's memory.
MAX_REPLY_BYTES = 32 * 1024 * 1024
# What a reply may be built of. A worker runs tenant input through C++; should one ever be
# subverted, its pickles must not be able to name anything else (os.system, eval, …).
_REPLY_MODULES = ("policy.", "control_plane.errors", "control_plane.services.rego_tasks")
_REPLY_GLOBALS = {
    ("collections", "Counter"),
    ("collections", "OrderedDict"),
    ("datetime", "datetime"),
    ("datetime", "timezone"),
    ("datetime", "timedelta"),
    *(("builtins", name) for name in ("set", "frozenset", "list", "dict", "tuple", "str")),
}


class _ReplyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith(_REPLY_MODULES) or (module, name) in _REPLY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a Rego worker's reply may not hold {module}.{name}")


class EvaluationLimit(Invalid):
    """A tenant's policies exceeded the sandbox's time or memory limit (422)."""

    code = "evaluation_limit"


# -- the worker side -------------------------------------------------------------------------


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """SIGKILL this worker when the control plane dies, even mid-task: a killed control
    plane must not leave a worker spinning on a tenant's rule (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(0)


def worker_main(fd: int, memory_mb: int, parent: int) -> None:
    """A worker's whole life: load the evaluator, cap memory, serve tasks until EOF."""
    _die_with(parent)
    conn = Connection(fd)
    # The parent stops workers itself; a terminal's Ctrl-C must not kill them mid-task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import control_plane.services.rego_tasks  # noqa: F401  (regopy loads here, before the limit)

    limit = _address_space() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        conn.send(_READY)
    except OSError:
        return  # the sandbox closed before this worker was ready
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return  # the control plane closed its end: stop
        try:
            reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except MemoryError:
            reply = ("memory", None)
        except KaizenError as exc:
            reply = ("error", exc)
        except Exception as exc:  # a bug in our code or in rego-cpp: report, keep serving
            reply = ("crash", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", None))


# -- the control-plane side ------------------------------------------------------------------


@dataclass(eq=False)  # identity: each worker is one process
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection


async def _readable(conn: Connection, seconds: float) -> bool:
    """Wait without a thread until `conn` has data (or EOF); False on timeout."""
    if conn.poll():
        return True
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, seconds)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


@dataclass
class _Share:
    """One organisation's use of the pool: running and waiting tasks."""

    running: asyncio.Semaphore
    users: int = 0


class RegoSandbox:
    def __init__(
        self,
        *,
        workers: int,
        timeout_seconds: float,
        memory_mb: int,
        per_organization: int,
        queue_per_organization: int,
    ) -> None:
        self.workers = max(1, workers)
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.per_organization = max(1, min(per_organization, self.workers))
        self.queue_per_organization = max(0, queue_per_organization)
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._shares: dict[str, _Share] = {}
        self._closed = False
        # Other organisations' tasks ahead of this one each end within the timeout.
        self._wait_seconds = max(30.0, 3 * timeout_seconds)
        self.replaced = 0  # workers killed or lost and replaced, for metrics and tests

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for operators and tests)."""
        return [worker.process.pid for worker in self._all]

    @property
    def idle(self) -> int:
        """Workers started and waiting for a task."""
        return self._idle.qsize()

    async def start(self) -> None:
        for _ in range(self.workers):
            self._spawn()

    async def close(self) -> None:
        self._closed = True
        for task in self._starting:
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        for worker in list(self._all):
            worker.conn.close()  # the worker reads EOF and returns
        for worker in list(self._all):
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(worker.process.wait, 2.0)
            self._kill(worker)

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        fd = child.fileno()
        code = (
            f"from {__name__} import worker_main; "
            f"worker_main({fd}, {int(self.memory_mb)}, {os.getpid()})"
        )
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [sys.executable, "-c", code], pass_fds=[fd], stdin=subprocess.DEVNULL
        )
        child.close()
        worker = _Worker(process, Connection(parent.detach()))
        self._all.add(worker)
        task = asyncio.create_task(self._await_ready(worker))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _await_ready(self, worker: _Worker) -> None:
        # A start-up slower than a minute means the machine cannot run workers at all.
        ok = await _readable(worker.conn, 60.0)
        try:
            ready = ok and worker.conn.recv() == _READY
        except (EOFError, OSError):
            ready = False
        if ready and not self._closed:
            self._idle.put_nowait(worker)
            return
        log.error("a Rego worker did not start (exit code %s)", worker.process.poll())
        self._kill(worker)

    def _kill(self, worker: _Worker) -> None:
        self._all.discard(worker)
        if worker.process.poll() is None:
            worker.process.kill()
        # SIGKILL ends it at once; reaping it here leaves no zombie behind.
        worker.process.wait()
        worker.conn.close()

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        self.replaced += 1
        if not self._closed:
            self._spawn()

    async def run(
        self, organization_id: str, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """`fn(*args, **kwargs)` in a worker, within this organisation's share of the pool.

        `what` names the evaluation in refusals ("simulating policies a, b").
        """
        if self._closed:
            raise Unavailable("the policy evaluator is shutting down; retry")
        share = self._shares.get(organization_id)
        if share is None:
            share = self._shares[organization_id] = _Share(asyncio.Semaphore(self.per_organization))
        if share.users >= self.per_organization + self.queue_per_organization:
            seconds = max(1, round(self.timeout_seconds))
            raise RateLimited(
                f"too many policy evaluations at once for this organisation: at most "
                f"{self.per_organization} run and {self.queue_per_organization} wait; "
                f"try again in {seconds} s",
                retry_after=seconds,
            )
        share.users += 1
        try:
            async with share.running:
                try:
                    worker = await asyncio.wait_for(self._idle.get(), self._wait_seconds)
                except TimeoutError:
                    raise Unavailable(
                        "no policy evaluator is free (every worker is busy or restarting); retry",
                        headers={"Retry-After": str(round(self.timeout_seconds) or 1)},
                    ) from None
                return await self._on(worker, what, fn, args, kwargs)
        finally:
            share.users -= 1
            if share.users == 0:
                self._shares.pop(organization_id, None)

    async def _on(
        self,
        worker: _Worker,
        what: str,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        try:
            worker.conn.send((fn, args, kwargs))
        except (OSError, ValueError):
            self._replace(worker)  # it died while idle
            raise Unavailable("the policy evaluator restarted; retry") from None
        done = False
        try:
            if not await _readable(worker.conn, self.timeout_seconds):
                raise EvaluationLimit(
                    f"{what}: policy evaluation exceeded {self.timeout_seconds:g} seconds "
                    "and was stopped; nothing was changed",
                    details=[{"limit": "timeout", "seconds": self.timeout_seconds}],
                )
            try:
                data = worker.conn.recv_bytes(MAX_REPLY_BYTES)
            except OSError:
                if worker.process.poll() is not None:
                    raise
                raise EvaluationLimit(
                    f"{what}: the evaluation's result is larger than "
                    f"{MAX_REPLY_BYTES // (1024 * 1024)} MB; nothing was changed",
                    details=[{"limit": "result", "megabytes": MAX_REPLY_BYTES // (1024 * 1024)}],
                ) from None
            try:
                kind, value = _ReplyUnpickler(io.BytesIO(data)).load()
            except (pickle.UnpicklingError, ValueError, TypeError) as exc:
                # Not a reply our tasks produce: the worker is not to be trusted again.
                raise EvaluationLimit(
                    f"{what}: the evaluator's reply was refused ({exc}); nothing was changed",
                    details=[{"limit": "reply"}],
                ) from None
            done = True
        except (EOFError, OSError):
            raise self._died(worker, what) from None
        finally:
            if done:
                self._idle.put_nowait(worker)
            else:  # timed out, died, or the caller went away mid-task: never reuse it
                self._replace(worker)
        if kind == "ok":
            result: T = value
            return result
        if kind == "memory":
            raise self._memory_error(what)
        if kind == "error":
            raise value
        raise Invalid(f"{what}: policy evaluation failed: {value}")

    def _died(self, worker: _Worker, what: str) -> EvaluationLimit:
        """The worker died mid-task. rego-cpp aborts (SIGABRT) when an allocation fails
        under the cap; anything else (e.g. a C++ stack overflow) is a crash."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(1.0)
        code = worker.process.returncode
        if code is None or code == -signal.SIGABRT:
            return self._memory_error(what)
        return EvaluationLimit(
            f"{what}: policy evaluation crashed the evaluator (exit status {code}) and was "
            "stopped; nothing was changed",
            details=[{"limit": "crash", "status": code}],
        )

    def _memory_error(self, what: str) -> EvaluationLimit:
        return EvaluationLimit(
            f"{what}: policy evaluation exceeded the memory limit of {self.memory_mb} MB "
            "and was stopped; nothing was changed",
            details=[{"limit": "memory", "megabytes": self.memory_mb}],
        )
