"""The offline demo provider, for `kaizen-studio up` without an API key.

Clearly not a model: deterministic, no network, and every reply says it is a demo. It
echoes the last user message so a newcomer can see the whole path (authz → gateway →
provider → execution record) work in the first minute.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateways.providers.base import ChatRequest, ChatResult, StreamEvent, TextDelta, Usage

PREFIX = "[demo provider: offline, not a language model]"


class DemoProvider:
    name = "demo"

    async def complete(self, request: ChatRequest) -> ChatResult:
        return self._reply(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        result = self._reply(request)
        words = result.text.split(" ")
        for i, word in enumerate(words):
            yield TextDelta(word if i == len(words) - 1 else word + " ")
        yield result

    async def aclose(self) -> None:
        return None

    def _reply(self, request: ChatRequest) -> ChatResult:
        last = next(
            (m["content"] for m in reversed(request.messages) if m["role"] in ("user", "tool")),
            "",
        )
        text = f"{PREFIX} You said: {last}"
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in request.messages)
        return ChatResult(text, (), Usage(prompt_words, len(text.split())), "demo")
