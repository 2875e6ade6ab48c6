"""The offline demo provider, for `kaizen-studio up` without an API key.

Clearly not a model: deterministic, no network, and every reply says it is a demo. It
echoes the last user message so a newcomer can see the whole path (authz → gateway →
provider → execution record) work in the first minute.

One question it "understands", so the README tour can reach data offline: an input
starting with `sql:` (e.g. `sql: SELECT * FROM orders`), when the agent has a connector
tool taking SQL (`sql.query`), becomes a tool call of that statement to the agent's first
such tool — an ordinary `ToolCall`, run by the executor exactly as a real model's (parsed,
every table decided by the sidecar, then run). When the tool answers, the reply quotes its
rows. Without such a tool it says so.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gateways.providers.base import (
    ChatRequest,
    ChatResult,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
)

PREFIX = "[demo provider: offline, not a language model]"
SQL_PREFIX = "sql:"


class DemoProvider:
    name = "demo"

    async def complete(self, request: ChatRequest) -> ChatResult:
        return self._reply(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        result = self._reply(request)
        if result.text:
            words = result.text.split(" ")
            for i, word in enumerate(words):
                yield TextDelta(word if i == len(words) - 1 else word + " ")
        yield result

    async def aclose(self) -> None:
        return None

    def _reply(self, request: ChatRequest) -> ChatResult:
        last = next(
            (m for m in reversed(request.messages) if m["role"] in ("user", "tool")),
            {"role": "user", "content": ""},
        )
        content = str(last.get("content") or "")
        calls: tuple[ToolCall, ...] = ()
        if last["role"] == "tool":
            text = f"{PREFIX} {last.get('name')} answered: {_quote(content)}"
        elif content.lstrip()[: len(SQL_PREFIX)].lower() == SQL_PREFIX:
            statement = content.lstrip()[len(SQL_PREFIX) :].strip()
            tool = next((t.name for t in request.tools if _takes_sql(t.input_schema)), None)
            if tool is None:
                text = f"{PREFIX} This agent has no connector tool that runs SQL (sql.query)."
            else:
                text = ""
                calls = (ToolCall("demo-call-1", tool, {"sql": statement}),)
        else:
            text = f"{PREFIX} You said: {content}"
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in request.messages)
        return ChatResult(text, calls, Usage(prompt_words, len(text.split())), "demo")


def _takes_sql(schema: Mapping[str, Any]) -> bool:
    properties = schema.get("properties")
    return isinstance(properties, Mapping) and "sql" in properties


def _quote(content: str) -> str:
    """A connector's rows as `column=value` lines; anything else (an error) as it came."""
    try:
        result = json.loads(content)
    except ValueError:
        return content
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        return content
    columns = [str(c) for c in result.get("columns") or []]
    rows = [
        ", ".join(f"{c}={v}" for c, v in zip(columns, row, strict=False))
        for row in result["rows"]
        if isinstance(row, list)
    ]
    parts = [f"{len(rows)} row(s) from {', '.join(result.get('tables') or []) or 'the database'}"]
    parts += rows
    if result.get("status"):
        parts.append(str(result["status"]))
    if result.get("note"):
        parts.append(str(result["note"]))
    return "; ".join(parts)
