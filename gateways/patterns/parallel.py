"""parallel — fan-out: every agent gets the same input at the same time.

`agents: [a, b]`, optional `aggregator`. Without an aggregator the output is a JSON object
`{agent: output}`; with one, the aggregator gets the input and every output (as sections
named after the agents) and its answer is the output. If any agent fails, the run fails.
"""

from __future__ import annotations

import asyncio
import json

from gateways.executor import PatternContext
from gateways.patterns._common import sections


async def run(ctx: PatternContext, text: str) -> str:
    names = ctx.pipeline.role("agents")
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(ctx.ask(name, text)) for name in names]
    outputs = [task.result() for task in tasks]
    aggregator = ctx.pipeline.role("aggregator")
    if aggregator is None:
        return json.dumps(dict(zip(names, outputs, strict=True)), ensure_ascii=False)
    prompt = f"{text}\n\n" + sections("Results", list(zip(names, outputs, strict=True)))
    return await ctx.ask(aggregator, prompt)
