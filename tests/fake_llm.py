"""A local stand-in for cloud LLM providers, which cannot run (or be reached) here.

It speaks the real wire protocols — OpenAI chat completions (`POST /v1/chat/completions`,
also what vLLM, Ollama and LM Studio serve) and Anthropic messages (`POST /v1/messages`),
both plain JSON and streaming SSE with the real event shapes — over real HTTP on a free
port, so the gateway's providers are exercised exactly as in production. Replies are
scripted per test: a function `(model, messages) -> Reply | str`, plus delays, garbage
bodies, error statuses and broken streams.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, args)
    delay: float = 0.0  # seconds before answering (or between stream chunks when streaming)
    mode: str = "ok"  # ok | garbage | error | bad_shape | truncated_stream
    status: int = 500
    input_tokens: int | None = None
    output_tokens: int | None = None


Script = Callable[[str, list[dict[str, Any]]], "Reply | str"]


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The last user/tool text of either wire format (for scripts)."""
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "tool":
            return str(content)
        if message.get("role") == "user":
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(b.get("text") or b.get("content") or "") for b in content)
    return ""


def _echo(model: str, messages: list[dict[str, Any]]) -> Reply:
    return Reply(text=f"{model}: {last_user_text(messages)}")


class FakeLLM:
    def __init__(self) -> None:
        self.script: Script = _echo
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    anthropic_url = openai_url

    def reset(self, script: Script | None = None) -> None:
        self.script = script or _echo
        self.requests.clear()
        self.headers.clear()

    def _reply(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        self.requests.append(body)
        self.headers.append(headers)
        messages = list(body.get("messages") or [])
        if body.get("system"):
            messages.insert(0, {"role": "system", "content": body["system"]})
        reply = self.script(str(body.get("model")), messages)
        return Reply(text=reply) if isinstance(reply, str) else reply

    # --- OpenAI -----------------------------------------------------------------------

    async def openai(self, request: Request) -> Response:
        body = await request.json()
        reply = self._reply(body, dict(request.headers))
        if reply.delay and not body.get("stream"):
            await asyncio.sleep(reply.delay)
        if reply.mode == "error":
            return JSONResponse({"error": {"message": "scripted failure"}}, reply.status)
        if reply.mode == "garbage":
            return Response("<html>502 Bad Gateway</html>", 200, media_type="text/html")
        if reply.mode == "bad_shape":
            return JSONResponse({"choices": "nope"})
        usage = _usage(reply, body)
        calls = [
            {
                "id": f"call_{i}_{uuid.uuid4().hex[:6]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
        if body.get("stream"):
            return StreamingResponse(
                self._openai_stream(body, reply, calls, usage), media_type="text/event-stream"
            )
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if calls else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": sum(usage),
                },
            }
        )

    async def _openai_stream(
        self,
        body: dict[str, Any],
        reply: Reply,
        calls: list[dict[str, Any]],
        usage: tuple[int, int],
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for piece in _pieces(reply.text):
            if reply.delay:
                await asyncio.sleep(reply.delay)
            yield chunk({"content": piece})
        for i, call in enumerate(calls):
            yield chunk({"tool_calls": [{"index": i, **call}]})
        if reply.mode == "truncated_stream":
            return
        yield chunk({}, "tool_calls" if calls else "stop")
        usage_chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
        }
        yield f"data: {json.dumps(usage_chunk)}\n\n"
        yield "data: [DONE]\n\n"

    # --- Anthropic --------------------------------------------------------------------

    async def anthropic(self, request: Request) -> Response:
        body = await request.json()
        reply = self._reply(body, dict(request.headers))
        if reply.delay and not body.get("stream"):
            await asyncio.sleep(reply.delay)
        if reply.mode == "error":
            return JSONResponse(
                {"type": "error", "error": {"type": "api_error", "message": "scripted failure"}},
                reply.status,
            )
        if reply.mode == "garbage":
            return Response("not json at all", 200, media_type="text/plain")
        if reply.mode == "bad_shape":
            return JSONResponse({"content": 42})
        usage = _usage(reply, body)
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for i, (name, args) in enumerate(reply.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args})
        if body.get("stream"):
            return StreamingResponse(
                self._anthropic_stream(body, reply, content, usage),
                media_type="text/event-stream",
            )
        return JSONResponse(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": content,
                "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
            }
        )

    async def _anthropic_stream(
        self,
        body: dict[str, Any],
        reply: Reply,
        content: list[dict[str, Any]],
        usage: tuple[int, int],
    ) -> AsyncIterator[str]:
        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        yield event(
            "message_start",
            {
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [],
                    "usage": {"input_tokens": usage[0], "output_tokens": 0},
                }
            },
        )
        yield ": keep-alive comment\n\n"
        for index, block in enumerate(content):
            if block["type"] == "text":
                yield event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
                for piece in _pieces(block["text"]):
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    yield event(
                        "content_block_delta",
                        {"index": index, "delta": {"type": "text_delta", "text": piece}},
                    )
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                yield event("content_block_start", {"index": index, "content_block": start})
                text = json.dumps(block["input"])
                for half in (text[: len(text) // 2], text[len(text) // 2 :]):
                    yield event(
                        "content_block_delta",
                        {
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": half},
                        },
                    )
            yield event("content_block_stop", {"index": index})
        if reply.mode == "truncated_stream":
            return
        yield event(
            "message_delta",
            {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": usage[1]}},
        )
        yield event("message_stop", {})

    # --- running ----------------------------------------------------------------------

    async def echo_tool(self, request: Request) -> Response:
        """A plain HTTP endpoint agents can call as an HTTP tool in tests."""
        if request.method == "GET":
            return JSONResponse({"query": dict(request.query_params)})
        return JSONResponse({"received": await request.json()})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.openai, methods=["POST"]),
                Route("/v1/messages", self.anthropic, methods=["POST"]),
                Route("/tools/echo", self.echo_tool, methods=["GET", "POST"]),
            ]
        )

    def start(self) -> None:
        self._served = ServedApp(self.app(), lifespan="off")
        self.url = self._served.url

    def stop(self) -> None:
        self._served.stop()


class ServedApp:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port in its own thread and loop."""

    def __init__(self, app: Any, lifespan: str = "on") -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_listening(port)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def _usage(reply: Reply, body: dict[str, Any]) -> tuple[int, int]:
    prompt = len(json.dumps(body.get("messages", []))) // 4
    return (
        reply.input_tokens if reply.input_tokens is not None else prompt,
        reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4),
    )


def _pieces(text: str) -> Iterator[str]:
    words = text.split(" ")
    for i, word in enumerate(words):
        if word or i == 0:
            yield word if i == len(words) - 1 else word + " "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def running_fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _standalone(port: int) -> None:
    """`python -m tests.fake_llm PORT`: the fake LLM answering a fixed reply, plus a bare
    executions-ingest, decisions-ingest and sidecar-settle stand-in, for benchmarks in a
    separate process."""
    fake = FakeLLM()
    fake.reset(lambda m, msgs: Reply("The answer is 42.", input_tokens=50, output_tokens=8))

    async def ingest(request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"accepted": len(body["executions"]), "duplicates": 0})

    async def settle(request: Request) -> Response:
        return Response(status_code=204)

    async def decisions(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":  # as the sidecar ships them
            body = gzip.decompress(body)
        return JSONResponse({"accepted": len(json.loads(body)["decisions"]), "duplicates": 0})

    app = fake.app()
    app.router.routes.append(Route("/api/v1/executions/ingest", ingest, methods=["POST"]))
    app.router.routes.append(Route("/api/v1/decisions/ingest", decisions, methods=["POST"]))
    app.router.routes.append(Route("/settle", settle, methods=["POST"]))
    fake.requests = _Discard()  # a benchmark must not grow memory per request
    fake.headers = _Discard()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


class _Discard(list):  # type: ignore[type-arg]
    def append(self, _item: Any) -> None:
        return None


if __name__ == "__main__":
    import sys

    _standalone(int(sys.argv[1]))
