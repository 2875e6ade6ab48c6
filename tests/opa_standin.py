"""A stand-in for the part of OPA's REST API that opa-python-client uses, for tests.

No package installs an OPA binary on our machines (TOOLCHAIN.md), so the external-OPA
evaluator is tested against this: `PUT /v1/policies/{id}`, `PUT /v1/data/{path}`,
`POST /v1/data/{path}` (with `strict-builtin-errors`) and `GET /health`, answering in
OPA's JSON shapes and evaluating with regopy (rego-cpp). It listens on 127.0.0.1 on a
random port and records every request so tests can see what the client sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import regopy
from regopy import Interpreter, LogLevel


class OpaStandIn:
    def __init__(self) -> None:
        self.policies: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def put_policy(self, policy_id: str, source: str) -> tuple[int, dict[str, Any] | None]:
        with self._lock:
            candidate = {**self.policies, policy_id: source}
            error = self._compile_error(candidate)
            if error is not None:
                return HTTPStatus.BAD_REQUEST, {
                    "code": "invalid_parameter",
                    "message": "error(s) occurred while compiling module(s)",
                    "errors": [{"code": "rego_parse_error", "message": error}],
                }
            self.policies = candidate
        return HTTPStatus.OK, {}

    def put_data(self, path: str, value: Any) -> None:
        with self._lock:
            node = self.data
            segments = [s for s in path.split("/") if s]
            for segment in segments[:-1]:
                node = node.setdefault(segment, {})
            if segments:
                node[segments[-1]] = value
            else:
                self.data = value

    def query(self, path: str, input: Any, strict: bool) -> tuple[int, dict[str, Any]]:
        reference = ".".join(["data", *[s for s in path.split("/") if s]])
        with self._lock:
            interpreter = self._interpreter(self.policies, strict)
            interpreter.add_data(self.data)
        interpreter.set_input_term(json.dumps(input))
        try:
            output = interpreter.query(f"x := {reference}")
        except (regopy.RegoError, ValueError) as exc:
            return HTTPStatus.INTERNAL_SERVER_ERROR, _internal_error(str(exc))
        if not output.ok():
            return HTTPStatus.INTERNAL_SERVER_ERROR, _internal_error(str(output.node().json()))
        if not output.results or "x" not in output.results[0].bindings:
            return HTTPStatus.OK, {}  # undefined: OPA omits "result"
        return HTTPStatus.OK, {"result": output.results[0].bindings["x"]}

    @staticmethod
    def _interpreter(policies: dict[str, str], strict: bool) -> Interpreter:
        interpreter = Interpreter()
        interpreter.log_level = LogLevel.NONE
        interpreter.strict_built_in_errors = strict
        for policy_id, source in sorted(policies.items()):
            interpreter.add_module(policy_id, source)
        return interpreter

    def _compile_error(self, policies: dict[str, str]) -> str | None:
        try:
            interpreter = self._interpreter(policies, True)
            bundle = interpreter.build("x := 1")
        except regopy.RegoError as exc:
            return str(exc)
        return None if bundle.ok() else "module does not compile"


def _internal_error(message: str) -> dict[str, Any]:
    return {"code": "internal_error", "message": message, "errors": [{"message": message}]}


def _handler(state: OpaStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `state.requests` instead."""

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: int, body: dict[str, Any] | None) -> None:
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            if urlsplit(self.path).path == "/health":
                self._reply(HTTPStatus.OK, {})
            else:
                self._reply(
                    HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": self.path}
                )

        def do_PUT(self) -> None:
            state.requests.append(("PUT", self.path))
            path = urlsplit(self.path).path
            if path.startswith("/v1/policies/"):
                status, body = state.put_policy(
                    path.removeprefix("/v1/policies/"), self._body().decode()
                )
                self._reply(status, body)
            elif path.startswith("/v1/data"):
                state.put_data(path.removeprefix("/v1/data"), json.loads(self._body() or b"null"))
                self._reply(HTTPStatus.NO_CONTENT, None)
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": path})

        def do_POST(self) -> None:
            state.requests.append(("POST", self.path))
            parts = urlsplit(self.path)
            if not parts.path.startswith("/v1/data"):
                self._reply(
                    HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": parts.path}
                )
                return
            strict = parse_qs(parts.query).get("strict-builtin-errors", ["false"])[0] == "true"
            request = json.loads(self._body() or b"{}")
            status, body = state.query(
                parts.path.removeprefix("/v1/data"), request.get("input"), strict
            )
            self._reply(status, body)

    return Handler


@contextmanager
def running_opa_standin() -> Iterator[tuple[str, OpaStandIn]]:
    """Yield the base URL (http://127.0.0.1:<port>) and the server's state."""
    state = OpaStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
