"""The nine pipeline patterns; each module's docstring says exactly what it does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateways.executor import PatternContext
from gateways.patterns import (
    blackboard,
    consensus,
    debate,
    ensemble,
    handoff,
    parallel,
    router,
    sequential,
    supervisor_worker,
)

PatternRunner = Callable[[PatternContext, str], Awaitable[str]]

PATTERN_RUNNERS: dict[str, PatternRunner] = {
    "sequential": sequential.run,
    "parallel": parallel.run,
    "router": router.run,
    "ensemble": ensemble.run,
    "blackboard": blackboard.run,
    "supervisor_worker": supervisor_worker.run,
    "consensus": consensus.run,
    "debate": debate.run,
    "handoff": handoff.run,
}
