"""sequential — a chain: each agent gets the previous agent's output as its input.

`agents: [a, b, c]`; a gets the pipeline input, b gets a's output, c gets b's; the output
is c's. One model call per agent at least (more when agents use tools).
"""

from __future__ import annotations

from gateways.executor import PatternContext


async def run(ctx: PatternContext, text: str) -> str:
    for name in ctx.pipeline.role("agents"):
        text = await ctx.ask(name, text)
    return text
