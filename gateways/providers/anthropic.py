"""Anthropic messages API: `POST {base_url}/messages`, tools as `tool_use`/`tool_result`
blocks, streaming as typed SSE events (`message_start`, `content_block_*`,
`message_delta`, `message_stop`, `error`)."""

from __future__ import annotations

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

DEFAULT_BASE_URL = "https://api.anthropic.com/v1"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024


class AnthropicProvider(HttpProvider):
    name = "anthropic"

    def __init__(
        self, base_url: str, api_key: str | None = None, session: GuardedSession | None = None
    ) -> None:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        super().__init__(base_url, headers, session)

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m["content"] for m in request.messages if m["role"] == "system")
        body: dict[str, Any] = {
            "max_tokens": DEFAULT_MAX_TOKENS,
            **request.parameters,
            "model": request.model,
            "messages": _wire_messages([m for m in request.messages if m["role"] != "system"]),
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.input_schema)}
                for t in request.tools
            ]
        if stream:
            body["stream"] = True
        return body

    async def complete(self, request: ChatRequest) -> ChatResult:
        body = await self.post_json(
            "/messages", self._body(request, False), request.timeout_seconds
        )
        try:
            if body.get("type") == "error":
                raise ProviderError(f"anthropic error: {body.get('error')}"[:300])
            text, calls = [], []
            for block in body["content"]:
                if block["type"] == "text":
                    text.append(str(block["text"]))
                elif block["type"] == "tool_use":
                    if not isinstance(block["input"], dict):
                        raise TypeError("tool input")
                    calls.append(ToolCall(str(block["id"]), str(block["name"]), block["input"]))
            raw_usage = body.get("usage") or {}
            usage = Usage(
                int(raw_usage.get("input_tokens", 0)), int(raw_usage.get("output_tokens", 0))
            )
        except (KeyError, TypeError, AttributeError, ValueError):
            raise ProviderError("anthropic answered JSON that is not a message") from None
        return ChatResult("".join(text), tuple(calls), usage, str(body.get("model", request.model)))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        text: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}
        tokens_in = tokens_out = 0
        stopped = False
        async with self.post_sse(
            "/messages", self._body(request, True), request.timeout_seconds
        ) as events:
            async for event, data in events:
                payload = load_json(self.name, data)
                try:
                    kind = payload.get("type", event)
                    if kind == "error":
                        raise ProviderError(f"anthropic stream error: {payload.get('error')}"[:300])
                    if kind == "message_start":
                        tokens_in = int(payload["message"]["usage"].get("input_tokens", 0))
                    elif kind == "content_block_start":
                        block = payload["content_block"]
                        blocks[int(payload["index"])] = {
                            "type": block["type"],
                            "id": block.get("id", ""),
                            "name": block.get("name", ""),
                            "json": "",
                        }
                    elif kind == "content_block_delta":
                        delta = payload["delta"]
                        if delta["type"] == "text_delta":
                            text.append(str(delta["text"]))
                            yield TextDelta(str(delta["text"]))
                        elif delta["type"] == "input_json_delta":
                            blocks[int(payload["index"])]["json"] += delta["partial_json"]
                    elif kind == "message_delta":
                        tokens_out = int((payload.get("usage") or {}).get("output_tokens", 0))
                    elif kind == "message_stop":
                        stopped = True
                        break
                except (KeyError, TypeError, AttributeError, ValueError):
                    raise ProviderError("anthropic streamed events of another shape") from None
        if not stopped:
            raise ProviderError("anthropic stream ended without message_stop")
        calls = []
        for _, block in sorted(blocks.items()):
            if block["type"] == "tool_use":
                args = load_json(self.name, block["json"] or "{}")
                if not isinstance(args, dict):
                    raise ProviderError("anthropic streamed tool input that is not an object")
                calls.append(ToolCall(block["id"], block["name"], args))
        yield ChatResult("".join(text), tuple(calls), Usage(tokens_in, tokens_out), request.model)


def _wire_messages(messages: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages → Anthropic's; consecutive tool results merge into one user turn."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": message["content"],
            }
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif message["role"] == "assistant" and message.get("tool_calls"):
            content: list[dict[str, Any]] = []
            if message.get("content"):
                content.append({"type": "text", "text": message["content"]})
            content.extend(
                {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
                for c in message["tool_calls"]
            )
            out.append({"role": "assistant", "content": content})
        else:
            out.append({"role": message["role"], "content": message["content"]})
    return out
