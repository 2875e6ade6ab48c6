"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama and LM Studio.

`POST {base_url}/chat/completions`, tools as `{"type": "function", …}`, streaming with
`stream: true` and `stream_options.include_usage` (SSE `data: {chunk}` … `data: [DONE]`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from policy.net.outbound_aiohttp import GuardedSession

from gateways.errors import ProviderError
from gateways.providers.base import (
    ChatRequest,
    ChatResult,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
)
from gateways.providers.http import HttpProvider, load_json

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
}


class OpenAIProvider(HttpProvider):
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        session: GuardedSession | None = None,
        name: str = "openai",
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(base_url, headers, session)
        self.name = name

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            **request.parameters,
            "model": request.model,
            "messages": [_wire_message(m) for m in request.messages],
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.input_schema),
                    },
                }
                for t in request.tools
            ]
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: ChatRequest) -> ChatResult:
        body = await self.post_json(
            "/chat/completions", self._body(request, False), request.timeout_seconds
        )
        try:
            message = body["choices"][0]["message"]
            text = message.get("content") or ""
            calls = tuple(_tool_call(c) for c in message.get("tool_calls") or [])
            usage = _usage(body.get("usage"))
            if not isinstance(text, str):
                raise TypeError("content")
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise ProviderError(
                f"{self.name} answered JSON that is not a chat completion"
            ) from None
        return ChatResult(text, calls, usage, str(body.get("model", request.model)))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = Usage()
        done = False
        async with self.post_sse(
            "/chat/completions", self._body(request, True), request.timeout_seconds
        ) as events:
            async for _event, data in events:
                if data.strip() == "[DONE]":
                    done = True
                    break
                chunk = load_json(self.name, data)
                try:
                    if "error" in chunk:
                        raise ProviderError(f"{self.name} stream error: {chunk['error']}"[:300])
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        piece = delta.get("content")
                        if piece:
                            text.append(str(piece))
                            yield TextDelta(str(piece))
                        for call in delta.get("tool_calls") or []:
                            slot = calls.setdefault(
                                int(call.get("index", 0)), {"id": "", "name": "", "args": ""}
                            )
                            fn = call.get("function") or {}
                            slot["id"] = call.get("id") or slot["id"]
                            slot["name"] += fn.get("name") or ""
                            slot["args"] += fn.get("arguments") or ""
                except (TypeError, AttributeError, ValueError):
                    raise ProviderError(f"{self.name} streamed chunks of another shape") from None
        if not done:
            raise ProviderError(f"{self.name} stream ended without [DONE]")
        tool_calls = tuple(
            _tool_call({"id": c["id"], "function": {"name": c["name"], "arguments": c["args"]}})
            for _, c in sorted(calls.items())
        )
        yield ChatResult("".join(text), tool_calls, usage, request.model)


def _wire_message(message: Mapping[str, Any]) -> dict[str, Any]:
    role = message["role"]
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message["tool_call_id"],
            "content": message["content"],
        }
    out: dict[str, Any] = {"role": role, "content": message.get("content", "")}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message["tool_calls"]
        ]
    return out


def _tool_call(raw: Mapping[str, Any]) -> ToolCall:
    function = raw["function"]
    arguments = function.get("arguments") or "{}"
    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    if not isinstance(parsed, dict):
        raise ValueError("tool arguments must be an object")
    return ToolCall(str(raw.get("id") or function["name"]), str(function["name"]), parsed)


def _usage(raw: Any) -> Usage:
    if not raw:
        return Usage()
    return Usage(int(raw.get("prompt_tokens", 0)), int(raw.get("completion_tokens", 0)))
