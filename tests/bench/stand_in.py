"""A production-shaped sidecar for the benchmarks: a gateway credential and a control plane.

With `KAIZEN_GATEWAY_TOKEN` a sidecar does what it does in production on every check: it
appends the decision to its durable log (and ships it) and signs the `x-kaizen-decision`
header for the gateway. Without one (static mode alone) it does neither, so a benchmark of
"the full decision" must give it one. The control plane here is `tests.fake_llm`'s
stand-in, which acknowledges decision batches (the sidecar's shipping cost counts, the
control plane's does not: it runs elsewhere in production).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

from tests.fake_llm import free_port, wait_listening

GATEWAY_TOKEN = "kgw_bench_stand_in_credential_0123456789"


def control_plane_env(stack: contextlib.ExitStack) -> dict[str, str]:
    """Start the stand-in (stopped with `stack`); the sidecar environment that uses it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_llm", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(_stop, process)
    wait_listening(port)
    return {
        "KAIZEN_GATEWAY_TOKEN": GATEWAY_TOKEN,
        "KAIZEN_CONTROL_PLANE_URL": f"http://127.0.0.1:{port}",
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
