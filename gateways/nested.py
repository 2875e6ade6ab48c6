"""Nested calls are authorized by the sidecar on behalf of the original caller.

The proxy's sidecar decided the outer call only (`invoke agent:A`, `run pipeline:P`). An
agent that calls agent B as a tool, and every step of a pipeline, reaches B inside the
gateway, where no proxy looks. So before each such call the gateway asks its sidecar's
`POST /authz` exactly as the proxy would for `POST /v1/agents/B/invoke`, with the caller's
own `Authorization`, the outer call's channel as `X-Kaizen-Channel` (a claim the sidecar
only lets narrow) and the gateway credential (`X-Kaizen-Gateway-Token`: the sidecar then
believes the X-Original-* headers from this peer). Anything but an allow for the same
principal refuses the nested call, and with it the outer call (403 `forbidden`, naming the
agent and the sidecar's reasons). A developer denied B therefore cannot reach B by
wrapping it in an agent or a pipeline they may call.

Connector calls (`sql.query` of an agent's connector tool) are asked the same way, one
check per table the statement touches:
`POST /v1/connectors/<name>/<read|write>/table:<schema>.<table>` (a statement that
touches no table: without the suffix), which the sidecar maps to action `read`/`write` on
`connector:<name>` with `resource.attributes.object`. Anything but an allow refuses the
call (403 naming the table and the sidecar's reasons; a hold carries its
`approval_request_id`), and nothing reaches the database.

Object-store calls (an agent's `objects.list` / `objects.get` / `objects.put`) are one
check each: `POST /v1/connectors/<name>/<read|write>/objects.<list|get|put>` with the
object in the body (`{"bucket", "key"}`, a list `{"bucket", "prefix"}`, a put also the
content's `bytes` and `sha256`, so an approval grant is for that content), which the sidecar
maps to `connector:<name>` with `resource.attributes.object` = `<bucket>/<key>`.

An allowed check may reserve B's estimated cost; the outer call settles the whole run's
real cost, so the nested reservation is settled at zero at once (no double counting).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import httpx
from policy.runtime import tracing

from gateways.errors import Forbidden

GATEWAY_CREDENTIAL_HEADER = "x-kaizen-gateway-token"
# The caller's approval grant for a held connector call, on the retry of the outer call.
# Not an x-kaizen-* header: the proxy removes those before the gateway (they are the
# sidecar's to set). Forwarded to the sidecar as X-Kaizen-Approval with connector checks only;
# the sidecar verifies it (principal, action, resource, gateway, the statement's hash) and
# spends it once.
NESTED_APPROVAL_HEADER = "kaizen-nested-approval"
MAX_GRANT_CHARS = 8192
CHECK_TIMEOUT_SECONDS = 5.0


class Settles(Protocol):
    def settle(self, decision_id: str, actual: dict[str, float]) -> None: ...


class NestedAuthorizer:
    """One outer call's caller, asking the sidecar before each nested agent call."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        sidecar_url: str,
        gateway_token: str,
        settler: Settles,
        *,
        authorization: str | None,
        principal: str,
        channel: str,
        approval: str | None = None,
    ) -> None:
        self._http = http
        self._approval = approval if approval and len(approval) <= MAX_GRANT_CHARS else None
        self._url = sidecar_url.rstrip("/") + "/authz"
        self._gateway_token = gateway_token
        self._settler = settler
        self._authorization = authorization
        self.principal = principal
        self._channel = channel
        # Within one run the answer for the same agent does not change: ask once.
        self._allowed: set[str] = set()

    async def check(self, caller: str, agent: str) -> None:
        """Return if the original principal may invoke `agent`; Forbidden otherwise."""
        if agent in self._allowed:
            return
        await self._ask(
            f"{caller} calls agent {agent}",
            f"/v1/agents/{agent}/invoke",
            f"invoke agent:{agent}",
            {"agent": agent},
        )
        self._allowed.add(agent)

    async def check_connector(
        self, caller: str, connector: str, operation: str, table: str | None, sql: str
    ) -> None:
        """Return if the original principal may `operation` (read/write) `table` through
        `connector`; Forbidden otherwise. Asked on every call: unlike an agent, the object
        differs from call to call and a hold must be asked again. The statement is the
        check's body (`{"sql": …}`): the decision log shows it and a hold's grant binds it."""
        uri = f"/v1/connectors/{connector}/{operation}" + (f"/table:{table}" if table else "")
        what = f"{operation} connector:{connector}" + (f" table:{table}" if table else "")
        await self._ask(
            f"{caller} calls connector {connector}",
            uri,
            what,
            {"connector": connector, "operation": operation, "table": table},
            body=json.dumps({"sql": sql}, separators=(",", ":")).encode(),
            approval=self._approval,
        )

    async def check_object(
        self, caller: str, connector: str, action: str, operation: str, body: dict[str, Any]
    ) -> None:
        """Return if the original principal may run the object call; Forbidden otherwise.
        Asked on every call, like a statement; `body` names the object (and a put's content
        hash, which a hold's grant binds)."""
        key = body.get("key", body.get("prefix", ""))
        obj = f"{body['bucket']}/{key}"
        await self._ask(
            f"{caller} calls connector {connector}",
            f"/v1/connectors/{connector}/{action}/{operation}",
            f"{operation} connector:{connector} object {obj}",
            {"connector": connector, "operation": operation, "object": obj},
            body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
            approval=self._approval,
        )

    async def _ask(
        self,
        doing: str,
        uri: str,
        what: str,
        details: dict[str, Any],
        body: bytes = b"",
        approval: str | None = None,
    ) -> None:
        if not self._authorization:
            raise Forbidden(f"{doing}, but the request carried no credential to authorize it")
        try:
            response = await self._http.post(
                self._url,
                # with traces on, the sidecar's check joins this call's trace
                headers=tracing.inject(
                    {
                        "authorization": self._authorization,
                        "x-original-method": "POST",
                        "x-original-uri": uri,
                        "x-kaizen-channel": self._channel,
                        GATEWAY_CREDENTIAL_HEADER: self._gateway_token,
                        **({"content-type": "application/json"} if body else {}),
                        **({"x-kaizen-approval": approval} if approval else {}),
                    }
                ),
                content=body,
                timeout=CHECK_TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:  # fail closed: an unchecked nested call is refused
            raise Forbidden(
                f"{doing}: the sidecar could not be asked ({type(exc).__name__}), "
                "so the call is refused"
            ) from None
        if response.status_code != 200:
            outcome = _field(response, "outcome")
            verb = "held for approval" if outcome == "require_approval" else "denied"
            extra: dict[str, Any] = {
                **details,
                "decision_id": response.headers.get("x-kaizen-decision-id"),
            }
            if outcome == "require_approval":
                extra["outcome"] = outcome
                extra["approval_request_id"] = _field(response, "approval_request_id")
            raise Forbidden(
                f"{doing}: the sidecar {verb} {what} for {self.principal}: {_reasons(response)}",
                extra,
            )
        decision_id = response.headers.get("x-kaizen-decision-id")
        if decision_id:
            # Every metric at zero: one left out would keep its estimate reserved.
            self._settler.settle(decision_id, {"cost_usd": 0.0, "tokens": 0.0, "executions": 0})
        principal = response.headers.get("x-kaizen-principal")
        if principal != self.principal:  # the credential is not the one the proxy checked
            raise Forbidden(
                f"{doing}: the sidecar allowed {principal!r}, not the caller {self.principal}"
            )


def _field(response: httpx.Response, name: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def _reasons(response: httpx.Response) -> str:
    try:
        reasons = response.json().get("reasons")
    except ValueError:
        reasons = None
    if isinstance(reasons, list) and reasons:
        return "; ".join(str(r) for r in reasons)[:1000]
    return response.headers.get("x-kaizen-reason") or f"HTTP {response.status_code}"
