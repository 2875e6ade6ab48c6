"""A SERVER span per HTTP request of an ASGI app (the control plane, the gateway).

Pure ASGI (no Starlette import: policy/ stays framework-free), added by an app only when
`tracing.ENABLED` at build time. The span is a child of the caller's `traceparent`; its
name is `<method> <route template>` once the router has matched (`scope["route"]`), so
`/v1/agents/{name}/invoke` stays one name for every agent. It is current while the app
runs, so the app's own spans and outbound `inject` calls belong to it. The organisation
and request id come from the log context variables the app sets (policy/runtime/logs.py):
the middleware must therefore sit inside whatever resets them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from policy.runtime import tracing
from policy.runtime.logs import organization_id_var, request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_TRACE_HEADERS = tuple(h.encode() for h in tracing.TRACE_HEADERS)


class TracingMiddleware:
    def __init__(self, app: App, skip: tuple[str, ...] = ("/healthz", "/metrics")) -> None:
        self.app = app
        self.skip = skip  # probes and scrapes: many, and nobody's call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.skip:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in _TRACE_HEADERS
        }
        method = str(scope.get("method", ""))
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        attributes = {"http.request.method": method, "url.path": str(scope.get("path", ""))}
        with tracing.server_span(method, tracing.extract(carrier), **attributes) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                template = getattr(scope.get("route"), "path", None)
                if span is not None and template:
                    span.update_name(f"{method} {template}")
                tracing.set_attributes(
                    **{
                        "http.route": template,
                        tracing.ORGANIZATION_ID: organization_id_var.get(),
                        "kaizen.request_id": request_id_var.get(),
                    }
                )
                tracing.set_status(status)
