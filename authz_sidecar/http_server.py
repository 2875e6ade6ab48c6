"""HTTP/1.1 side of the sidecar: Envoy `http_service` ext_authz, nginx `auth_request`,
health, metrics, status and settle.

Routes (the wire protocol is authz_sidecar/http_protocol.py: llhttp on uvloop):
- `<method> /ext_authz<original path>`: Envoy's HTTP ext_authz (the default transport).
  The original request is the request line after the prefix, its headers (what Envoy's
  `allowed_headers` lets through) and its body (`with_request_body`). Only a peer in
  KAIZEN_SIDECAR_TRUSTED_PROXIES (Envoy beside the sidecar, loopback by default) is
  believed; the source address is `x-ext-authz-source-ip`, which Envoy sets from the
  downstream connection (`headers_to_add`) and never copies from a caller.
  Allow is 200 with the upstream headers plus `x-envoy-auth-headers-to-remove` naming the
  caller's other `x-kaizen-*` headers; deny/401 is the status, JSON body and headers.
- `/authz`: nginx `auth_request`, the original request in X-Original-URI/-Method.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from authz_sidecar import metrics
from authz_sidecar.authorizer import NOT_READY, Authorizer
from authz_sidecar.authzen_http import (
    EVALUATION_PATH,
    EVALUATIONS_PATH,
    METADATA_PATH,
    AuthzenApi,
    is_authzen,
)
from authz_sidecar.authzen_http import PREFIX as AUTHZEN_PREFIX
from authz_sidecar.http_protocol import (
    HttpProtocol,
    Limits,
    Request,
    Response,
    error_response,
    json_response,
    serve,
)
from authz_sidecar.mapping import HttpFacts
from authz_sidecar.verdict import Verdict
from policy.runtime import tracing

log = logging.getLogger(__name__)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

GATEWAY_CREDENTIAL_HEADER = "x-kaizen-gateway-token"
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
EXT_AUTHZ_PREFIX = "/ext_authz"
MAX_HEAD = 32 * 1024
MAX_CONTROL_BODY = 64 * 1024
# Envoy's http_service: the request header naming caller headers to drop on allow.
HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
# Set by Envoy on each check to the downstream address (deploy/envoy/envoy.yaml).
SOURCE_IP_HEADER = "x-ext-authz-source-ip"


# Probes and scrapes: many, and nobody's call.
_UNTRACED = frozenset({"/healthz", "/metrics"})
# Span names: these routes by path, anything else one name (a scanner's paths are not names).
_NAMED = frozenset(
    {"/authz", "/settle", "/status", EVALUATION_PATH, EVALUATIONS_PATH, METADATA_PATH}
)
_NO_ORIGINAL_URI = "no X-Original-URI: the proxy must name the request it asks about"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_json = json_response
_error = error_response


def verdict_response(verdict: Verdict) -> Response:
    headers: list[tuple[str, str]] = [("x-kaizen-outcome", verdict.outcome)]
    if verdict.allowed:
        return _json(200, verdict.body(), [*headers, *verdict.upstream_headers()])
    headers.append(("x-kaizen-decision-id", verdict.decision_id))
    # nginx auth_request drops the body; the reasons then travel in a header.
    headers.append(("x-kaizen-reason", "; ".join(verdict.reasons)[:1024]))
    if verdict.approval_request_id is not None:
        headers.append(("x-kaizen-approval-request-id", verdict.approval_request_id))
    if verdict.challenge is not None:
        headers.append(("www-authenticate", verdict.challenge))
    elif verdict.status == 401:
        headers.append(("www-authenticate", 'Bearer realm="kaizen"'))
    return _json(verdict.status, verdict.body(), headers)


def ext_authz_response(verdict: Verdict) -> Response:
    """verdict_response, and on allow the caller's own x-kaizen-* headers for Envoy to drop.

    Envoy overwrites same-named request headers with the allowed upstream ones; the rest
    of the caller's x-kaizen-* headers (workspace, channel, a forged decision when this
    sidecar signs none) would reach the gateway unless named here."""
    status, headers, body = verdict_response(verdict)
    if verdict.allowed:
        ours = {name for name, _ in verdict.upstream_headers()}
        drop = [h for h in verdict.remove_headers if h not in ours]
        if drop:
            headers.append((HEADERS_TO_REMOVE, ",".join(drop)))
    return status, headers, body


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
        request_timeout: float = 10.0,
        idle_timeout: float = 120.0,
        authzen_base_url: str | None = None,
    ) -> None:
        self._authorizer = authorizer
        self._max_body = max_body
        self._gateway_token = gateway_token.encode() if gateway_token else None
        self._authzen = AuthzenApi(
            authorizer, gateway_token=self._gateway_token, base_url=authzen_base_url
        )
        self._proxies = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)
        self._backlog = backlog or (lambda: None)
        self._sync_status = sync_status or dict
        self._started = time.time()
        self._connections: set[HttpProtocol] = set()
        self.limits = Limits(
            body_limit=self._body_limit,
            max_head=MAX_HEAD,
            request_timeout=request_timeout,
            idle_timeout=idle_timeout,
        )

    def _body_limit(self, path: str) -> int:
        if path == "/authz" or path.startswith((EXT_AUTHZ_PREFIX, AUTHZEN_PREFIX)):
            return self._max_body
        return MAX_CONTROL_BODY

    async def close_connections(self) -> None:
        """Close keep-alive connections (after the listening socket is closed)."""
        for connection in list(self._connections):
            connection.close()
        await asyncio.sleep(0)

    async def traced_handle(self, request: Request) -> Response:
        """`handle` in a SERVER span, child of the caller's `traceparent` (traces on only:
        `start_http_server` picks it once, so with traces off no trace header is read).

        An allowed ext_authz check whose caller sent no valid trace context hands its own
        span's `traceparent` to Envoy (allowed_upstream_headers), so the gateway's span
        joins the sidecar's trace; a caller's own context is never replaced."""
        path = request.target.split("?", 1)[0]
        if path in _UNTRACED:
            return await self.handle(request)
        ext_authz = path.startswith(EXT_AUTHZ_PREFIX)
        original = path[len(EXT_AUTHZ_PREFIX) :] if ext_authz else path
        route = path if path in _NAMED else "unknown route"
        name = "ext_authz" if ext_authz else f"{request.method} {route}"
        attributes = {"http.request.method": request.method, "url.path": original[:256]}
        parent = tracing.extract(request.headers)
        with tracing.server_span(name, parent, **attributes):
            status, headers, body = await self.handle(request)
            tracing.set_status(status)
            if ext_authz and status == 200 and parent is None:
                own = tracing.traceparent()
                if own is not None:
                    headers = [*headers, ("traceparent", own)]
            return status, headers, body

    async def handle(self, request: Request) -> Response:
        path = request.target.split("?", 1)[0]
        try:
            if path.startswith(EXT_AUTHZ_PREFIX):
                facts = self._ext_authz_facts(request)
                return ext_authz_response(await self._authorizer.check(facts))
            if is_authzen(path):
                return await self._authzen.handle(request, path)
            return await self._route(
                request.method, path, request.headers, request.body, request.peer_ip
            )
        except HttpError as exc:
            return _error(exc.status, str(exc))

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
            revision = self._authorizer.serving()
            if revision is None:
                return _json(503, {"status": "unavailable", "reason": NOT_READY})
            return _json(200, {"status": "ok", "bundle_revision": revision})
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

    def _ext_authz_facts(self, request: Request) -> HttpFacts:
        """The original request of an Envoy http_service check, if this peer is Envoy.

        Only a trusted proxy's word is taken: the gateway credential is no way in here,
        as the headers of this request are the caller's own (allowed_headers)."""
        original = request.target[len(EXT_AUTHZ_PREFIX) :]
        headers = request.headers
        refusal: str | None = None
        if not self._trusted(request.peer_ip):
            refusal = (
                f"/ext_authz is only accepted from a trusted proxy "
                f"(KAIZEN_SIDECAR_TRUSTED_PROXIES); peer {str(request.peer_ip)[:64]} is not one"
            )
        elif not original.startswith("/"):
            refusal = f"/ext_authz must be followed by the original path, got {original[:64]!r}"
        return HttpFacts(
            method=request.method,
            path=original if refusal is None else "",
            headers=headers,
            body=request.body,
            source_ip=_address(headers.get(SOURCE_IP_HEADER)) or request.peer_ip,
            body_truncated=headers.get("x-envoy-auth-partial-body", "").lower() == "true",
            refusal=refusal,
        )

    def _trusted(self, peer_ip: str | None) -> bool:
        return peer_ip is not None and _within(peer_ip, self._proxies)

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


# Both are asked per check about the few addresses a sidecar sees (its Envoy, its callers):
# parsing an address costs more than the rest of the header handling, so answers are kept.
@functools.lru_cache(maxsize=4096)
def _within(peer_ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _address(value: str | None) -> str | None:
    """An IP address as Envoy wrote it, normalised; None when it is not one."""
    return _normalised_address(value.strip()) if value else None


@functools.lru_cache(maxsize=4096)
def _normalised_address(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


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
    # Decided once per process: with traces off the plain handler serves every request.
    handler = app.traced_handle if tracing.ENABLED else app.handle
    return await serve(handler, app.limits, reuse_port_socket(host, port), app._connections)
