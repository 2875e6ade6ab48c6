"""debate — debaters argue in turns over several rounds; a judge decides.

`debaters: [pro, con]` (two or more), `judge: referee`, `rounds` (default 2). In each
round every debater, in order, gets the question and the transcript so far and adds an
argument. The judge then gets the question and the whole transcript; its answer is the
output.
"""

from __future__ import annotations

from gateways.executor import PatternContext
from gateways.patterns._common import sections


async def run(ctx: PatternContext, text: str) -> str:
    transcript: list[tuple[str, str]] = []
    for round_number in range(1, int(ctx.pipeline.role("rounds") or 2) + 1):
        for name in ctx.pipeline.role("debaters"):
            prompt = f"{text}\n\n{sections('Debate so far', transcript)}\n\nYour argument:"
            transcript.append((f"{name} (round {round_number})", await ctx.ask(name, prompt)))
    verdict = f"{text}\n\n{sections('Debate', transcript)}\n\nDecide and answer the question."
    return await ctx.ask(ctx.pipeline.role("judge"), verdict)
