"""What the Rego sandbox costs the common path: simulate in a worker thread (the path before
M8) against simulate in a sandbox worker process, same policies and input, same run.

Also: a worker's start-up (spawn to ready, which a killed worker's replacement pays in the
background) and the round trip of a trivial task (the pickling and socket overhead alone).

Run: `.venv/bin/python -m tests.bench bench_rego_sandbox`
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from control_plane.services import rego_tasks
from control_plane.services.rego_sandbox import RegoSandbox
from policy.compile.compiler import CompileContext

N = 200
SOURCES = [
    (
        "agent-roles",
        """kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke, deploy]}]
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
""",
    ),
    (
        "guardrails",
        """kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "mcp tool shell is forbidden" if input.tool.name == "shell"
    require_approval contains "deploys to prod need approval" if {
      input.action == "deploy"
      input.resource.workspace == "prod"
    }
""",
    ),
]
INPUT: dict[str, Any] = {
    "principal": {"id": "user:alice@example.com", "type": "user", "teams": []},
    "action": "invoke",
    "resource": {"type": "agent", "id": "agent:support-bot", "workspace": "dev"},
    "channel": "api",
}


async def _timed(call: Callable[[], Awaitable[Any]]) -> list[float]:
    await call()  # warm
    times = []
    for _ in range(N):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _row(name: str, times: list[float]) -> None:
    p99 = sorted(times)[int(len(times) * 0.99) - 1]
    print(f"{name:<42} median {statistics.median(times):7.2f} ms   p99 {p99:7.2f} ms")


async def _run() -> None:
    context = CompileContext("bench-org")
    sandbox = RegoSandbox(
        workers=2, timeout_seconds=10, memory_mb=512, per_organization=1, queue_per_organization=4
    )
    start = time.perf_counter()
    await sandbox.start()
    while sandbox.idle < sandbox.workers:  # noqa: ASYNC110  (a poll is all a bench needs)
        await asyncio.sleep(0.01)
    startup = (time.perf_counter() - start) * 1000
    try:
        threaded = await _timed(
            lambda: asyncio.to_thread(rego_tasks.simulate, SOURCES, context, dict(INPUT))
        )
        sandboxed = await _timed(
            lambda: sandbox.run(
                "bench-org", "bench", rego_tasks.simulate, SOURCES, context, dict(INPUT)
            )
        )
        trivial = await _timed(lambda: sandbox.run("bench-org", "bench", rego_tasks.validate, ""))
    finally:
        await sandbox.close()
    print(f"{N} sequential simulations (compile + decide + explain) of a 2-policy set")
    _row("simulate in a thread (before M8)", threaded)
    _row("simulate in a sandbox worker (M8)", sandboxed)
    _row("trivial task round trip (sandbox overhead)", trivial)
    ratio = statistics.median(sandboxed) / statistics.median(threaded)
    print(f"sandbox / thread, median: {ratio:.2f}x")
    print(f"2 workers spawned to ready: {startup:.0f} ms")


def main() -> None:
    asyncio.run(_run())


if __name__ == "__main__":
    main()
