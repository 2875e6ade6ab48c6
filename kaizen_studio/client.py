"""A typed Python client for the control plane's API (`kaizen_studio.client`).

Written on httpx with the API's own pydantic schemas, so what a method returns is what the
API documents (`/openapi.json`); method groups follow the stable operation ids
(`client.policies.publish()` is `policies.publish`). The CLI's remote commands
(`kaizen-studio login`, `policy push|test --remote|replay|publish`) use it, so their tests
exercise it; `tests/e2e/test_up.py` drives the README tour's API steps with it.

    from kaizen_studio.client import KaizenClient
    with KaizenClient("https://cp.example.com", api_key="ks_…") as kaizen:
        kaizen.policies.apply(open("policies/guardrails.yaml").read())
        report = kaizen.policies.test()
        if report.passed:
            kaizen.policies.publish(message="from CI")

Every error answer raises `ApiError` (status, the API's `code`, message and `details`, from
the one error envelope); a control plane that cannot be reached raises `Unreachable`. With a
refresh token (from `auth.login`), an expired access token is refreshed once and the call
retried; `on_tokens` hears about the new pair (the CLI saves it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from control_plane.schemas.approvals import Approval
from control_plane.schemas.base import Page
from control_plane.schemas.decisions import Decision
from control_plane.schemas.fleet import Execution, Gateway
from control_plane.schemas.identity import Me, TokenResponse
from control_plane.schemas.policies import BundleRevision, PolicyApplied, TestReport
from control_plane.schemas.replay import Replay
from control_plane.schemas.workloads import DeploymentCreated, WorkloadApplied

Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """The control plane answered with an error (its `{"error": {code, message, details}}`)."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.details = details or []


class Unreachable(Exception):
    """No answer from the control plane (connection refused, DNS, timeout, TLS)."""


# A publish whose answer was lost is sent again with the same Idempotency-Key.
PUBLISH_ATTEMPTS = 3
LOST_ANSWER = frozenset({502, 503, 504})  # a proxy's answer when its upstream died


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()["error"]
        return ApiError(
            response.status_code, str(body["code"]), str(body["message"]), body.get("details")
        )
    except (ValueError, KeyError, TypeError):
        return ApiError(
            response.status_code, "http_error", response.text[:200] or response.reason_phrase
        )


class KaizenClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        on_tokens: Callable[[TokenResponse], None] | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._bearer = api_key or access_token
        self._refresh_token = None if api_key else refresh_token
        self._on_tokens = on_tokens
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self.auth = _Auth(self)
        self.policies = _Policies(self)
        self.decisions = _Decisions(self)
        self.approvals = _Approvals(self)
        self.agents = _Agents(self)
        self.gateways = _Gateways(self)
        self.deployments = _Deployments(self)
        self.executions = _Executions(self)

    def __enter__(self) -> KaizenClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One API call; raises ApiError for any non-2xx answer, Unreachable for none."""
        response = self._send(method, path, json, params, authenticated, headers)
        if response.status_code == 401 and authenticated and self._refresh_token:
            self._refresh()
            response = self._send(method, path, json, params, authenticated, headers)
        if response.is_error:
            raise _error(response)
        return response

    def call(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return model.model_validate(self.request(method, path, **kwargs).json())

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        authenticated: bool,
        extra: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        headers = dict(extra or {})
        if authenticated and self._bearer:
            headers["authorization"] = f"Bearer {self._bearer}"
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            return self._http.request(method, path, json=json, params=query, headers=headers)
        except httpx.TransportError as exc:
            raise Unreachable(f"{self.url}: {exc}") from exc

    def _refresh(self) -> None:
        refresh_token, self._refresh_token = self._refresh_token, None  # one try
        pair = self.call(
            TokenResponse,
            "POST",
            "/api/v1/auth/refresh",
            json={"refresh_token": refresh_token},
            authenticated=False,
        )
        self.use(pair)

    def use(self, tokens: TokenResponse) -> None:
        """Act with `tokens` from now on (and tell `on_tokens`)."""
        self._bearer, self._refresh_token = tokens.access_token, tokens.refresh_token
        if self._on_tokens is not None:
            self._on_tokens(tokens)


def _param(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class _Group:
    def __init__(self, client: KaizenClient) -> None:
        self._client = client


class _Auth(_Group):
    def login(
        self,
        email: str,
        password: str,
        *,
        totp: str | None = None,
        organization_id: uuid.UUID | None = None,
    ) -> TokenResponse:
        """`auth.login`; the client acts as that user afterwards."""
        body: dict[str, Any] = {"email": email, "password": password}
        if totp:
            body["totp"] = totp
        if organization_id:
            body["organization_id"] = str(organization_id)
        pair = self._client.call(
            TokenResponse, "POST", "/api/v1/auth/login", json=body, authenticated=False
        )
        self._client.use(pair)
        return pair

    def me(self) -> Me:
        """`identity.me`: who the client acts as."""
        return self._client.call(Me, "GET", "/api/v1/me")


class _Policies(_Group):
    def apply(self, source: str) -> PolicyApplied:
        """`policies.apply`: create or update drafts from one source (all or nothing)."""
        return self._client.call(PolicyApplied, "POST", "/api/v1/policies", json={"source": source})

    def test(self, *, draft: bool = True) -> TestReport:
        """`policies.run_tests`: every PolicyTest case against the drafts (or the published set)."""
        return self._client.call(TestReport, "POST", "/api/v1/policies/test", json={"draft": draft})

    def simulate(self, decision_input: Mapping[str, Any], *, draft: bool = True) -> dict[str, Any]:
        """`policies.simulate`: the decision the drafts would make, explained."""
        body = {"input": dict(decision_input), "draft": draft}
        answer: dict[str, Any] = self._client.request(
            "POST", "/api/v1/policies/simulate", json=body
        ).json()
        return answer

    def replay(
        self, since: datetime, *, until: datetime | None = None, draft: bool = True
    ) -> Replay:
        """`policies.replay_set`: start replaying stored decisions against the drafts."""
        body: dict[str, Any] = {"since": since.isoformat(), "draft": draft}
        if until is not None:
            body["until"] = until.isoformat()
        return self._client.call(Replay, "POST", "/api/v1/policies/replay", json=body)

    def replay_status(self, replay_id: uuid.UUID) -> Replay:
        """`replays.get`."""
        return self._client.call(Replay, "GET", f"/api/v1/replays/{replay_id}")

    def publish(
        self,
        *,
        message: str = "",
        accept_replay: uuid.UUID | None = None,
        idempotency_key: str | None = None,
    ) -> BundleRevision:
        """`policies.publish`: test, compile and sign the drafts as a new revision.

        Sent with an `Idempotency-Key` (a new one unless given), so when the answer is lost
        (no answer, or 502/503/504 from a proxy whose replica died) it is sent again, up to
        `PUBLISH_ATTEMPTS` times in all: the control plane answers the revision the first
        attempt stored, never a second one."""
        body: dict[str, Any] = {"message": message}
        if accept_replay is not None:
            body["accept_replay"] = str(accept_replay)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}

        def send() -> BundleRevision:
            return self._client.call(
                BundleRevision, "POST", "/api/v1/policies/publish", json=body, headers=headers
            )

        for attempt in range(1, PUBLISH_ATTEMPTS):
            try:
                return send()
            except (Unreachable, ApiError) as error:
                if isinstance(error, ApiError) and error.status not in LOST_ANSWER:
                    raise
                time.sleep(0.5 * attempt)
        return send()


class _Decisions(_Group):
    def list(self, **filters: Any) -> Page[Decision]:
        """`decisions.list`: one page (filters as the API's query: outcome, principal, since…)."""
        return self._client.call(Page[Decision], "GET", "/api/v1/decisions", params=filters)

    def search(self, **filters: Any) -> Iterator[Decision]:
        """Every decision matching `filters`, page after page."""
        cursor = None
        while True:
            page = self.list(**filters, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def export(self, *, fmt: str = "ndjson", **filters: Any) -> bytes:
        """`decisions.export`: NDJSON (or CSV) of the matching decisions."""
        response = self._client.request(
            "GET", "/api/v1/decisions/export", params={**filters, "format": fmt}
        )
        return response.content


class _Approvals(_Group):
    def list(self, **filters: Any) -> Page[Approval]:
        """`approvals.list`."""
        return self._client.call(Page[Approval], "GET", "/api/v1/approvals", params=filters)

    def approve(self, approval_id: str, *, comment: str | None = None) -> Approval:
        """`approvals.approve` (approvers only, never the requester)."""
        body = {"comment": comment} if comment else None
        return self._client.call(
            Approval, "POST", f"/api/v1/approvals/{approval_id}/approve", json=body
        )

    def deny(self, approval_id: str, *, comment: str | None = None) -> Approval:
        """`approvals.deny`."""
        body = {"comment": comment} if comment else None
        return self._client.call(
            Approval, "POST", f"/api/v1/approvals/{approval_id}/deny", json=body
        )


class _Agents(_Group):
    def apply(self, source: str) -> WorkloadApplied:
        """`agents.apply`: create or update agents from one source (a new version each)."""
        return self._client.call(WorkloadApplied, "POST", "/api/v1/agents", json={"source": source})


class _Gateways(_Group):
    def list(self) -> Page[Gateway]:
        """`gateways.list`."""
        return self._client.call(Page[Gateway], "GET", "/api/v1/gateways")


class _Deployments(_Group):
    def create(self, gateway_id: uuid.UUID, kind: str, name: str) -> DeploymentCreated:
        """`deployments.deploy`: serve an agent or pipeline at a gateway (signed into the
        bundle); the answer carries its API, CLI and MCP endpoints."""
        body = {"gateway_id": str(gateway_id), "kind": kind, "name": name}
        return self._client.call(DeploymentCreated, "POST", "/api/v1/deployments", json=body)


class _Executions(_Group):
    def list(self, **filters: Any) -> Page[Execution]:
        """`decisions.list_executions`: agent and pipeline runs (name, status, principal)."""
        return self._client.call(Page[Execution], "GET", "/api/v1/executions", params=filters)
