"""ensemble — several agents answer the same input; their answers are combined.

`agents: [a, b, c]`, `strategy: majority | aggregator` (default `aggregator` when an
`aggregator` agent is named, else `majority`). Majority: the most common answer after
normalising (case, spaces, edge punctuation); a tie goes to the agent listed first; the
output is that answer as first written. Aggregator: the aggregator gets the input and all
candidate answers and writes the final one. Agents run concurrently.
"""

from __future__ import annotations

import asyncio

from gateways.executor import PatternContext
from gateways.patterns._common import majority, sections


async def run(ctx: PatternContext, text: str) -> str:
    names = ctx.pipeline.role("agents")
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(ctx.ask(name, text)) for name in names]
    answers = [task.result() for task in tasks]
    if ctx.pipeline.role("strategy") == "majority":
        return majority(answers)[0]
    prompt = f"{text}\n\n" + sections("Candidate answers", list(zip(names, answers, strict=True)))
    return await ctx.ask(ctx.pipeline.role("aggregator"), prompt)
