"""blackboard — specialists write to a shared board; a controller decides who goes next.

`controller: lead`, `agents: [researcher, writer]`. Each round the controller gets the
input, the board so far and the list of agents, and answers with the name of the agent
to run next, or `DONE` (optionally followed by the final answer). The chosen agent gets
the input plus the board and its contribution is appended. The output is the text after
`DONE`, or the last contribution when there is none. An answer that names no agent fails
the run; the loop is cut by `limits.max_steps`.
"""

from __future__ import annotations

from gateways.errors import PipelineError
from gateways.executor import PatternContext
from gateways.patterns._common import first_word, normalise, sections


async def run(ctx: PatternContext, text: str) -> str:
    agents: list[str] = ctx.pipeline.role("agents")
    board: list[tuple[str, str]] = []
    while True:
        prompt = (
            f"{text}\n\n{sections('Blackboard', board)}\n\n"
            f"Agents: {', '.join(agents)}\nAnswer with the agent to run next, or DONE."
        )
        answer = await ctx.ask(ctx.pipeline.role("controller"), prompt)
        word = first_word(answer)
        if word == "done":
            rest = answer.strip()[4:].lstrip(" :\n")
            if rest:
                return rest
            if not board:
                raise PipelineError("controller said DONE before anything was on the board")
            return board[-1][1]
        chosen = next((a for a in agents if normalise(a) in (word, normalise(answer))), None)
        if chosen is None:
            raise PipelineError(
                f"controller answered {answer[:100]!r}: neither DONE nor one of {', '.join(agents)}"
            )
        contribution = await ctx.ask(chosen, f"{text}\n\n{sections('Blackboard', board)}")
        board.append((chosen, contribution))
