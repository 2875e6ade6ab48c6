"""consensus — agents answer in rounds until enough of them agree.

`agents: [a, b, c]`, `threshold` (share of agents that must give the same normalised
answer, 0.5 to 1, default 1 = unanimous), `max_rounds` (default 3). Round 1: every agent
answers the input. Later rounds: every agent gets the input and all answers of the
previous round and may revise. The output is the agreed answer as first written; no
agreement after `max_rounds` fails the run naming the last answers.
"""

from __future__ import annotations

import asyncio
import math

from gateways.errors import PipelineError
from gateways.executor import PatternContext
from gateways.patterns._common import majority, sections


async def run(ctx: PatternContext, text: str) -> str:
    agents: list[str] = ctx.pipeline.role("agents")
    threshold = float(ctx.pipeline.role("threshold") or 1.0)
    rounds = int(ctx.pipeline.role("max_rounds") or 3)
    needed = max(1, math.ceil(threshold * len(agents) - 1e-9))
    previous: list[tuple[str, str]] = []
    for round_number in range(1, rounds + 1):
        prompt = text
        if previous:
            prompt = (
                f"{text}\n\n{sections(f'Answers in round {round_number - 1}', previous)}\n\n"
                "Give your answer again; agree if you are convinced."
            )
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(ctx.ask(name, prompt)) for name in agents]
        previous = list(zip(agents, [t.result() for t in tasks], strict=True))
        answer, count = majority([a for _, a in previous])
        if count >= needed:
            return answer
    summary = "; ".join(f"{name}: {answer[:60]!r}" for name, answer in previous)
    raise PipelineError(f"no consensus after {rounds} round(s) (needed {needed}): {summary}")
