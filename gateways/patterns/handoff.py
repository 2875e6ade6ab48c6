"""handoff — the current agent either answers or hands the conversation to another.

`entry: triage`, `agents: [triage, billing, tech]`. The entry agent gets the input. If its
reply starts with `HANDOFF: <agent>` (any case) control passes to that agent, which gets
the input plus the notes so far (the rest of each hand-off reply); any other reply is the
output. A hand-off to an agent not in `agents` fails the run; hand-off loops are cut by
`limits.max_steps`.
"""

from __future__ import annotations

import re

from gateways.errors import PipelineError
from gateways.executor import PatternContext
from gateways.patterns._common import sections

HANDOFF = re.compile(r"^\s*HANDOFF\s*:\s*([^\s,.;]+)[\s,.;]*(.*)$", re.IGNORECASE | re.DOTALL)


async def run(ctx: PatternContext, text: str) -> str:
    agents: list[str] = ctx.pipeline.role("agents")
    current: str = ctx.pipeline.role("entry")
    notes: list[tuple[str, str]] = []
    while True:
        prompt = text if not notes else f"{text}\n\n{sections('Hand-off notes', notes)}"
        reply = await ctx.ask(current, prompt)
        match = HANDOFF.match(reply)
        if match is None:
            return reply
        target = match.group(1)
        if target not in agents:
            raise PipelineError(f"{current} handed off to {target!r}, which is not in {agents}")
        notes.append((f"{current} → {target}", match.group(2).strip() or "(no note)"))
        current = target
