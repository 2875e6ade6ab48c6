"""router — one agent picks which agent handles the input.

`router: triage`, `routes: {billing: billing-bot, tech: tech-bot}`, optional `default`.
The router gets the input followed by the list of route labels and is asked to answer
with one label. Its answer selects the route when, normalised (case, spaces, edge
punctuation), it equals a label, or else contains exactly one label as a word; otherwise
`default` is used, and without a default the run fails naming the answer. The chosen agent
gets the original input; its output is the pipeline's output.
"""

from __future__ import annotations

import re

from gateways.errors import PipelineError
from gateways.executor import PatternContext
from gateways.patterns._common import normalise


def choose(answer: str, labels: list[str]) -> str | None:
    said = normalise(answer)
    for label in labels:
        if normalise(label) == said:
            return label
    found = [
        label
        for label in labels
        if re.search(rf"(?<![\w-]){re.escape(normalise(label))}(?![\w-])", said)
    ]
    return found[0] if len(found) == 1 else None


async def run(ctx: PatternContext, text: str) -> str:
    routes: dict[str, str] = ctx.pipeline.role("routes")
    labels = list(routes)
    prompt = f"{text}\n\nRoutes: {', '.join(labels)}\nAnswer with exactly one route label."
    answer = await ctx.ask(ctx.pipeline.role("router"), prompt)
    label = choose(answer, labels)
    if label is not None:
        return await ctx.ask(routes[label], text)
    default = ctx.pipeline.role("default")
    if default is None:
        raise PipelineError(
            f"router answered {answer[:100]!r}, which is none of the routes ({', '.join(labels)})"
        )
    return await ctx.ask(default, text)
