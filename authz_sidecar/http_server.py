"""HTTP/1.1 side of the sidecar: `/authz` for nginx `auth_request`, health, metrics, status, settle.

A small asyncio server rather than an ASGI stack: `/authz` is on the hot path of every
proxied call, the routes are fixed, and bodies are tiny (measured in tests/bench). It
speaks keep-alive with Content-Length bodies only; anything else gets a clear 4xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from authz_sidecar import metrics
from authz_sidecar.authorizer import NOT_READY, Authorizer, Verdict
from authz_sidecar.mapping import HttpFacts

log = logging.getLogger(__name__)

GATEWAY_CREDENTIAL_HEADER = "x-kaizen-gateway-token"
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
MAX_HEAD = 32 * 1024
MAX_CONTROL_BODY = 64 * 1024
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


_NO_ORIGINAL_URI = "no X-Original-URI: the proxy must name the request it asks about"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Response = tuple[int, list[tuple[str, str]], bytes]


def _json(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return status, [("content-type", "application/json"), *(headers or [])], body


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": {"code": _REASONS.get(status, "error"), "message": message}})


def verdict_response(verdict: Verdict) -> Response:
    headers: list[tuple[str, str]] = [("x-kaizen-outcome", verdict.outcome)]
    if verdict.allowed:
        return _json(200, verdict.body(), [*headers, *verdict.upstream_headers()])
    headers.append(("x-kaizen-decision-id", verdict.decision_id))
    # nginx auth_request drops the body; the reasons then travel in a header.
    headers.append(("x-kaizen-reason", "; ".join(verdict.reasons)[:1024]))
    if verdict.approval_request_id is not None:
        headers.append(("x-kaizen-approval-request-id", verdict.approval_request_id))
    if verdict.status == 401:
        headers.append(("www-authenticate", 'Bearer realm="kaizen"'))
    return _json(verdict.status, verdict.body(), headers)


class SidecarHttp:
    def __init__(
        self,
        authorizer: Authorizer,
        *,
        max_body: int,
        backlog: Callable[[], int | None] | None = None,
        sync_status: Callable[[], dict[str, Any]] | None = None,
        gateway_token: str | None = None,
        trusted_proxies: Sequence[str] = DEFAULT_TRUSTED_PROXIES,
    ) -> None:
        self._authorizer = authorizer
        self._max_body = max_body
        self._gateway_token = gateway_token.encode() if gateway_token else None
        self._proxies = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)
        self._backlog = backlog or (lambda: None)
        self._sync_status = sync_status or dict
        self._started = time.time()
        self._connections: set[asyncio.StreamWriter] = set()

    async def close_connections(self) -> None:
        """Close idle keep-alive connections (after the listening socket is closed)."""
        for writer in list(self._connections):
            writer.close()
        await asyncio.sleep(0)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        peer = writer.get_extra_info("peername")
        peer_ip = peer[0] if isinstance(peer, tuple) else None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    await _write(writer, _error(431, "request head is too large"), close=True)
                    return
                keep_alive, response = await self._request(head, reader, peer_ip)
                await _write(writer, response, close=not keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _request(
        self, head: bytes, reader: asyncio.StreamReader, peer_ip: str | None
    ) -> tuple[bool, Response]:
        try:
            method, target, version, headers = _parse_head(head)
        except HttpError as exc:
            return False, _error(exc.status, str(exc))
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        path = target.split("?", 1)[0]
        limit = self._max_body if path == "/authz" else MAX_CONTROL_BODY
        try:
            body = await _read_body(reader, headers, limit)
        except HttpError as exc:
            return False, _error(exc.status, str(exc))
        try:
            return keep_alive, await self._route(method, path, headers, body, peer_ip)
        except HttpError as exc:
            return keep_alive, _error(exc.status, str(exc))

    async def _route(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        peer_ip: str | None,
    ) -> Response:
        if path == "/authz":
            _allow(method, ("GET", "POST"))
            return verdict_response(
                await self._authorizer.check(self._facts(method, headers, body, peer_ip))
            )
        if path == "/healthz":
            _allow(method, ("GET", "HEAD"))
            snapshot = self._authorizer.holder.current
            if snapshot is None:
                return _json(503, {"status": "unavailable", "reason": NOT_READY})
            return _json(200, {"status": "ok", "bundle_revision": snapshot.bundle.revision})
        if path == "/metrics":
            _allow(method, ("GET",))
            text, content_type = metrics.render()
            return 200, [("content-type", content_type)], text
        if path == "/status":
            _allow(method, ("GET",))
            self._require_gateway(headers.get("authorization"), path)
            return _json(200, self.status())
        if path == "/settle":
            _allow(method, ("POST",))
            self._require_gateway(headers.get("authorization"), path)
            return await self._settle(body)
        raise HttpError(404, f"no route {path[:100]!r}; try /authz, /healthz, /metrics, /status")

    def _facts(
        self, method: str, headers: dict[str, str], body: bytes, peer_ip: str | None
    ) -> HttpFacts:
        """What the proxy says the original request was, if this peer may say it.

        X-Original-URI, X-Original-Method and X-Real-IP are the proxy's words: from a peer
        outside KAIZEN_SIDECAR_TRUSTED_PROXIES without the gateway credential they would let
        a caller pick the route (and so the resource) and the source address it is judged
        by. Such a request is judged by its peer address and denied for want of a route.
        """
        if self._trusted(peer_ip) or self._is_gateway(headers.get(GATEWAY_CREDENTIAL_HEADER)):
            return HttpFacts(
                method=headers.get("x-original-method", method),
                path=headers.get("x-original-uri", ""),
                headers=headers,
                body=body,
                source_ip=headers.get("x-real-ip") or peer_ip,
                # nginx auth_request never sends the body: an empty one is not "seen".
                body_seen=bool(body),
                refusal=None if "x-original-uri" in headers else _NO_ORIGINAL_URI,
            )
        return HttpFacts(
            method=method,
            path="",
            headers=headers,
            body=body,
            source_ip=peer_ip,
            body_seen=bool(body),
            refusal=(
                f"X-Original-URI is only accepted from a trusted proxy "
                f"(KAIZEN_SIDECAR_TRUSTED_PROXIES) or with the gateway credential; "
                f"peer {str(peer_ip)[:64]} is neither"
            ),
        )

    def _trusted(self, peer_ip: str | None) -> bool:
        if peer_ip is None:
            return False
        try:
            address = ipaddress.ip_address(peer_ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._proxies)

    def _is_gateway(self, credential: str | None) -> bool:
        if self._gateway_token is None or not credential:
            return False
        return hmac.compare_digest(credential.strip().encode(), self._gateway_token)

    def _require_gateway(self, authorization: str | None, path: str) -> None:
        """`/settle` moves budget counters and `/status` describes the fleet: the gateway's."""
        if self._gateway_token is None:
            raise HttpError(
                401,
                f"{path} is closed: this sidecar has no gateway credential (KAIZEN_GATEWAY_TOKEN)",
            )
        scheme, _, credential = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not self._is_gateway(credential):
            raise HttpError(
                401, f"{path} needs the gateway credential: Authorization: Bearer <token>"
            )

    def status(self) -> dict[str, Any]:
        holder = self._authorizer.holder
        snapshot = holder.current
        bundle = snapshot.bundle if snapshot is not None else None
        return {
            "ready": snapshot is not None,
            "bundle_revision": bundle.revision if bundle else None,
            "key_id": bundle.key_id if bundle else None,
            "scope": bundle.scope if bundle else None,
            "organization": snapshot.organization if snapshot else None,
            "last_sync": _rfc3339(holder.last_sync),
            "last_error": holder.last_error,
            "log_backlog": self._backlog(),
            "started_at": _rfc3339(self._started),
            "instance": self._authorizer.instance,
            **self._sync_status(),
        }

    async def _settle(self, body: bytes) -> Response:
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            message = "body must be JSON {decision_id, actual: {metric: used}}"
            raise HttpError(400, message) from None
        decision_id = request.get("decision_id") if isinstance(request, dict) else None
        actual = request.get("actual", {}) if isinstance(request, dict) else None
        if not isinstance(decision_id, str) or not decision_id:
            raise HttpError(422, "decision_id must be the x-kaizen-decision-id of an allowed call")
        if not isinstance(actual, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for k, v in actual.items()
        ):
            raise HttpError(422, "actual must map metric names to non-negative numbers")
        try:
            settled = await self._authorizer.settle(decision_id, actual)
        except Exception as exc:
            log.error("settling %s failed: %s", decision_id, exc)
            raise HttpError(503, f"budget store unavailable: {type(exc).__name__}") from None
        if settled == 0:
            raise HttpError(404, f"no open reservation for decision {decision_id[:64]}")
        return 204, [], b""


def _allow(method: str, methods: tuple[str, ...]) -> None:
    if method not in methods:
        raise HttpError(405, f"use {' or '.join(methods)}")


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], parts[1], parts[2], headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], limit: int) -> bytes:
    if "transfer-encoding" in headers:
        raise HttpError(411, "send a Content-Length body, not chunked")
    declared = headers.get("content-length")
    if declared is None:
        return b""
    if not declared.isdigit():
        raise HttpError(400, "bad Content-Length")
    length = int(declared)
    if length > limit:
        raise HttpError(413, f"body over {limit} bytes")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise HttpError(400, "body shorter than Content-Length") from None


async def _write(writer: asyncio.StreamWriter, response: Response, *, close: bool) -> None:
    status, headers, body = response
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    # Values come from verified credentials, but never let one split the response.
    lines.extend(f"{k}: {v.replace(chr(13), ' ').replace(chr(10), ' ')}" for k, v in headers)
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


def _rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket several worker processes can share (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start_http_server(app: SidecarHttp, host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(
        app.handle, sock=reuse_port_socket(host, port), limit=MAX_HEAD
    )
