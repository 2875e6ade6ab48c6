"""supervisor_worker — a supervisor delegates tasks to workers and writes the answer.

`supervisor: boss`, `workers: [coder, tester]`. Each round the supervisor gets the input
and the results so far, and answers either with assignment lines `ASSIGN <worker>: <task>`
(the workers run those tasks concurrently and their results are added), or with the final
answer (a leading `FINAL:` is removed). An assignment to an unknown worker fails the run;
rounds are cut by `limits.max_steps`.
"""

from __future__ import annotations

import asyncio
import re

from gateways.errors import PipelineError
from gateways.executor import PatternContext
from gateways.patterns._common import sections

ASSIGN = re.compile(r"^\s*ASSIGN\s+([^:\s]+)\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
FINAL = re.compile(r"^\s*FINAL\s*:\s*", re.IGNORECASE)


async def run(ctx: PatternContext, text: str) -> str:
    workers: list[str] = ctx.pipeline.role("workers")
    results: list[tuple[str, str]] = []
    while True:
        prompt = (
            f"{text}\n\n{sections('Results', results)}\n\nWorkers: {', '.join(workers)}\n"
            "Assign tasks with lines 'ASSIGN <worker>: <task>', or answer with 'FINAL: <answer>'."
        )
        answer = await ctx.ask(ctx.pipeline.role("supervisor"), prompt)
        assignments = ASSIGN.findall(answer)
        if not assignments:
            return FINAL.sub("", answer.strip(), count=1)
        unknown = [w for w, _ in assignments if w not in workers]
        if unknown:
            raise PipelineError(
                f"supervisor assigned work to unknown worker(s): {', '.join(unknown)}"
            )
        async with asyncio.TaskGroup() as group:
            tasks = [(w, task, group.create_task(ctx.ask(w, task))) for w, task in assignments]
        results.extend((f"{w}: {task}", t.result()) for w, task, t in tasks)
