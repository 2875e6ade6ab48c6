"""One authorization check, the same for gRPC ext_authz and HTTP `/authz`.

authenticate → map the route → decide (RBAC → ABAC → budgets) → approval grant. Every
path ends in a Verdict with a decision id; anything unexpected is a deny, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from authz_sidecar import metrics
from authz_sidecar.authn import (
    AuthenticationError,
    resource_metadata_url,
    scope_needed,
    scope_refusal,
)
from authz_sidecar.authzen import Evaluation, as_api_key
from authz_sidecar.budgets import ReservationBook, ReservationRecord
from authz_sidecar.engine_holder import EngineHolder, Snapshot
from authz_sidecar.grants import GrantError, ReplayGuard
from authz_sidecar.mapping import HttpFacts, MappedRequest, MappingError, map_request
from authz_sidecar.tenancy import NO_TENANT, Tenants
from authz_sidecar.verdict import (
    DECISION_HEADER_TTL,
    Verdict,
    deny,
    hs256_jwt,
    scope_challenge,
    token_challenge,
)
from policy.engine.budgets import BudgetKey, Reservation
from policy.engine.decide import Decision, DecisionEngine, new_decision_id
from policy.engine.decision_input import Outcome, now_text
from policy.runtime import tracing

log = logging.getLogger(__name__)

NOT_READY = "no verified policy bundle loaded"
SHARED_AUTHZEN = "AuthZEN evaluations are not offered by a shared platform gateway's sidecar"
# A reservation record another worker queued may not be in Redis yet (budget_leases lets
# its writes linger a few milliseconds): /settle looks once more after this long.
SETTLE_RETRY_SECONDS = 0.05


class BudgetReserver(Protocol):
    """Non-blocking budget reservations (authz_sidecar.budgets.RedisBudgetBatch, or from
    leases: budget_leases.LeasedBudgets) that store a decision's reservation record (for
    /settle) with the reservations; `thresholds[i]`: what decides allow for `items[i]`."""

    async def reserve_many(
        self,
        items: Sequence[tuple[BudgetKey, float]],
        record: ReservationRecord | None = None,
        thresholds: Sequence[float] | None = None,
    ) -> list[float]: ...

    async def release(self, key: BudgetKey, amount: float) -> None: ...

    async def forget(self, organization: str, decision_id: str) -> None: ...

    async def flushed(self) -> None: ...


class DecisionSink(Protocol):
    """Where decision records go (authz_sidecar.decision_log.DecisionBuffer)."""

    async def append(self, record: dict[str, Any]) -> None: ...


class Authorizer:
    def __init__(
        self,
        holder: EngineHolder | Tenants,
        *,
        replay_guard: ReplayGuard,
        reservations: ReservationBook,
        workspace: str | None = None,
        environment: str | None = None,
        gateway: str | None = None,
        trust_workspace_header: bool = False,
        decision_key: bytes | None = None,
        sink: DecisionSink | None = None,
        budgets: BudgetReserver | None = None,
    ) -> None:
        self.holder = holder
        self.tenants = holder if isinstance(holder, Tenants) else None
        # Without it the engine reserves through holder.ledger itself (in process, tests).
        self.budgets = budgets
        self.replay_guard = replay_guard
        self.reservations = reservations
        self.workspace = workspace
        self.environment = environment
        self.gateway = gateway
        self.trust_workspace_header = trust_workspace_header
        self.decision_key = decision_key
        self.sink = sink
        self.instance = f"{socket.gethostname()}/{os.getpid()}"
        self.counts: dict[str, int] = {}  # decisions by outcome, for status reports
        self._pending: set[asyncio.Task[None]] = set()

    def serving(self) -> str | None:
        """The bundle revision served (`org:revision,…` on a shared gateway); None: none."""
        if self.tenants is not None:
            return self.tenants.serving()
        snapshot = self.holder.current
        return snapshot.bundle.revision if snapshot is not None else None

    async def check(self, facts: HttpFacts) -> Verdict:
        return await self._logged(self._check(facts))

    async def evaluate(
        self, evaluation: Evaluation, *, caller: str, path: str, source_ip: str | None
    ) -> Verdict:
        """An AuthZEN evaluation (authz_sidecar.authzen): decided, counted and logged as a
        gateway check is; `caller` (who asked, already authenticated) goes into the record."""
        return await self._logged(self._evaluate(evaluation, caller, path, source_ip))

    async def _logged(
        self,
        step: Coroutine[Any, Any, tuple[Verdict, dict[str, Any] | None, dict[str, Any] | None]],
    ) -> Verdict:
        started = time.perf_counter()
        input: dict[str, Any] | None = None
        result: dict[str, Any] | None = None
        try:
            verdict, input, result = await step
        except Exception:  # a bug here must deny, not crash the server or allow
            log.exception("authorization check failed")
            verdict = deny(new_decision_id(), ("internal error in the authz sidecar",), None)
        elapsed = time.perf_counter() - started
        if tracing.ENABLED:  # one flag read per check when off (ADR 0013)
            tracing.annotate_decision(
                verdict.decision_id, verdict.outcome, verdict.organization, verdict.bundle_revision
            )
        self.counts[verdict.outcome] = self.counts.get(verdict.outcome, 0) + 1
        metrics.decisions(verdict.outcome, verdict.status).inc()
        metrics.DECISION_SECONDS.observe(elapsed)
        if self.sink is not None:
            await self._record(verdict, input, result, elapsed)
        return verdict

    async def _check(
        self, facts: HttpFacts
    ) -> tuple[Verdict, dict[str, Any] | None, dict[str, Any] | None]:
        snapshot, route = self.holder.current, facts
        if self.tenants is not None:  # a shared gateway: the credential's organisation
            pick = self.tenants.pick(facts)
            snapshot, route = pick.snapshot, pick.route
            if snapshot is None and self.tenants.ready:
                failed = (f"authentication failed: {NO_TENANT}",)
                return Verdict(401, "deny", new_decision_id(), failed, None), None, None
        if snapshot is None:
            return deny(new_decision_id(), (NOT_READY,), None), None, None
        revision = snapshot.bundle.revision
        authenticator = snapshot.authenticator
        on_mcp = _is_mcp(route.path)
        metadata = (
            resource_metadata_url(authenticator.mcp_resource)
            if on_mcp and authenticator.mcp_resource
            else None
        )
        authorization = facts.headers.get("authorization")
        try:
            principal = authenticator.authenticate(authorization)
            if "oauth_client" in principal["attributes"] and not on_mcp:
                raise AuthenticationError("an MCP client's token is only for /mcp")
        except AuthenticationError as exc:
            failed = (f"authentication failed: {exc}",)
            challenge = token_challenge(metadata, None if not authorization else str(exc))
            verdict = Verdict(401, "deny", new_decision_id(), failed, revision, challenge=challenge)
            return verdict, None, None
        try:
            mapped = map_request(route, snapshot.agents)
            input = self.decision_input(facts, principal, mapped)
        except MappingError as exc:
            verdict = deny(new_decision_id(), (str(exc),), revision, principal, snapshot)
            return verdict, None, None
        if self.tenants is not None and (
            refusal := self.tenants.namespace_refusal(facts, principal)
        ):  # logged under the caller's own organisation
            return deny(new_decision_id(), (refusal,), revision, principal, snapshot), input, None
        if refusal := scope_refusal(principal, mapped.action, mapped.resource_type):
            verdict = deny(new_decision_id(), (refusal,), revision, principal, snapshot)
            if "oauth_client" in principal["attributes"]:
                needed = scope_needed(mapped.action, mapped.resource_type)
                verdict = replace(verdict, challenge=scope_challenge(needed, metadata))
            return verdict, input, None
        if mapped.narrowing:
            input = _claim_if_route_allows(snapshot.engine, input, mapped)
        decision, result = await self._conclude(
            snapshot, input, facts.headers.get("x-kaizen-approval")
        )
        outcome: Outcome = result["outcome"]
        verdict = Verdict(
            200 if outcome == "allow" else 403,
            outcome,
            decision.decision_id,
            tuple(result["reasons"]),
            revision,
            principal["id"],
            snapshot.organization,
            result.get("approval_request_id"),
            self._signed(decision, input, facts) if outcome == "allow" else None,
            tuple(h for h in facts.headers if h.startswith("x-kaizen-")),
        )
        return verdict, input, result

    async def _evaluate(
        self, evaluation: Evaluation, caller: str, path: str, source_ip: str | None
    ) -> tuple[Verdict, dict[str, Any] | None, dict[str, Any] | None]:
        if self.tenants is not None:
            return deny(new_decision_id(), (SHARED_AUTHZEN,), None), None, None
        snapshot = self.holder.current
        if snapshot is None:
            return deny(new_decision_id(), (NOT_READY,), None), None, None
        input = evaluation.decision_input(
            organization=snapshot.organization,
            workspace=self.workspace,
            environment=self.environment,
            gateway=self.gateway,
            request={"method": "POST", "path": path, "source_ip": source_ip, "caller": caller},
        )
        if evaluation.subject_type == "apikey" and (
            refusal := as_api_key(input, snapshot.authenticator)
        ):
            principal = input["principal"]
            revision = snapshot.bundle.revision
            return deny(new_decision_id(), (refusal,), revision, principal, snapshot), input, None
        # No approval grant here: a grant binds a gateway call (body, gateway), not a question.
        decision, result = await self._conclude(snapshot, input, None)
        outcome: Outcome = result["outcome"]
        verdict = Verdict(
            200 if outcome == "allow" else 403,
            outcome,
            decision.decision_id,
            tuple(result["reasons"]),
            snapshot.bundle.revision,
            evaluation.principal_id,
            snapshot.organization,
            result.get("approval_request_id"),
        )
        return verdict, input, result

    async def _conclude(
        self, snapshot: Snapshot, input: dict[str, Any], grant: str | None
    ) -> tuple[Decision, dict[str, Any]]:
        """Decide (RBAC → ABAC → budgets), apply an approval grant, keep the reservations
        for /settle; the decision and the result a decision record carries."""
        decision = await self._decide(snapshot.engine, input)
        outcome: Outcome = decision.outcome
        reasons: tuple[str, ...] = decision.reasons
        if outcome == "require_approval" and grant:
            outcome, reasons = await self._apply_grant(snapshot, grant, input, decision)
            if outcome == "allow":  # charged like any allowed call: reserved here, settled later
                decision = await self._decide(snapshot.engine, input, approved=True)
                if decision.outcome != "allow":  # a hard limit reached meanwhile
                    outcome, reasons = decision.outcome, decision.reasons
        if outcome == "allow" and decision.reservations and self.budgets is None:
            # (A budget reserver stored the record with the reservations.)
            self._remember(decision)
        result = decision.to_dict()
        result["outcome"], result["reasons"] = outcome, list(reasons)
        if outcome == "require_approval":
            result["approval_request_id"] = decision.decision_id
        return decision, result

    async def _decide(
        self, engine: DecisionEngine, input: Mapping[str, Any], *, approved: bool = False
    ) -> Decision:
        if self.budgets is None:
            return metrics.count_budget(engine.decide(input, approved=approved))
        step = engine.begin(input, approved=approved)
        if isinstance(step, Decision):
            return step
        organization = step.needs[0][0].organization
        record = (organization, step.decision_id, step.reservations())
        try:
            totals = await self.budgets.reserve_many(step.needs, record, step.thresholds)
        except Exception as exc:  # fail closed: the budget could not be checked
            return engine.fail_budgets(step, exc)
        decision = engine.finish(step, totals, release=self._release)
        if decision.outcome != "allow":  # its reservations are given back: so is its record
            self._background(self._forget(organization, step.decision_id))
        return metrics.count_budget(decision)

    async def _forget(self, organization: str, decision_id: str) -> None:
        assert self.budgets is not None
        try:
            await self.budgets.forget(organization, decision_id)
        except Exception as exc:  # it expires; a gateway settles only allowed calls
            log.warning("cannot drop the reservation record of %s: %s", decision_id, exc)

    def _release(self, key: BudgetKey, amount: float) -> None:
        assert self.budgets is not None
        self._background(self._give_back(key, amount))

    async def _give_back(self, key: BudgetKey, amount: float) -> None:
        assert self.budgets is not None
        try:
            await self.budgets.release(key, amount)
        except Exception as exc:  # the counter stays high until its window ends: conservative
            log.warning("cannot release %g of budget %s: %s", amount, key.redis_key, exc)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _remember(self, decision: Decision) -> None:
        try:
            organization = decision.reservations[0].key.organization
            self.reservations.remember(organization, decision.decision_id, decision.reservations)
        except Exception as exc:  # the reservation stands as estimated; only settle is lost
            log.warning("cannot store reservations of %s: %s", decision.decision_id, exc)

    async def drain(self) -> None:
        """Wait for releases and reservation records still being stored (settle, shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.budgets is not None:  # records written with (or after) reservations
            await self.budgets.flushed()
        await self.reservations.flushed()

    def _signed(self, decision: Decision, input: Mapping[str, Any], facts: HttpFacts) -> str | None:
        if self.decision_key is None:
            return None
        now = int(time.time())
        principal = input["principal"]
        decision_id = decision.decision_id
        claims = {
            "decision_id": decision_id,
            # Single use at the gateway (jti) and bound to the one request it decided: the
            # gateway recomputes method, path and body hash (None: the proxy hid the body).
            "jti": decision_id,
            "method": facts.method.upper(),
            "path": facts.path.split("?", 1)[0],
            "bh": facts.body_sha256(),
            "sub": principal["id"],
            "org": principal.get("organization"),
            "roles": principal.get("roles") or [],
            "action": input["action"],
            "resource": input["resource"]["id"],
            "channel": input.get("channel"),
            # Whether the call reserved budget here: the gateway settles only then (false
            # spares it a /settle that could only answer 404).
            "rsv": bool(decision.reservations),
            "iat": now,
            "exp": now + DECISION_HEADER_TTL,
        }
        return hs256_jwt(claims, self.decision_key)

    async def _apply_grant(
        self, snapshot: Snapshot, grant: str, input: Mapping[str, Any], decision: Decision
    ) -> tuple[Outcome, tuple[str, ...]]:
        try:
            claims = snapshot.grants.verify(grant, input)
        except GrantError as exc:
            return "require_approval", (*decision.reasons, str(exc))
        try:
            first = await self.replay_guard.first_use(claims["jti"], float(claims["exp"]))
        except GrantError as exc:  # no shared reuse store: grants are refused, saying why
            return "require_approval", (*decision.reasons, str(exc))
        except Exception as exc:  # fail closed: an unchecked grant could be replayed
            reason = f"approval grant cannot be checked for reuse: {type(exc).__name__}: {exc}"
            return "require_approval", (*decision.reasons, reason)
        if not first:
            return "require_approval", (
                *decision.reasons,
                "approval grant was already used; ask for a new approval",
            )
        request_id = claims.get("approval_request_id")
        return "allow", (f"approved by approval request {request_id}",)

    def decision_input(
        self, facts: HttpFacts, principal: dict[str, Any], mapped: MappedRequest
    ) -> dict[str, Any]:
        workspace = self.workspace
        if workspace is None and self.trust_workspace_header:
            workspace = facts.headers.get("x-kaizen-workspace") or None
        context: dict[str, Any] = {
            "time": now_text(),
            "environment": self.environment or workspace,
            "gateway": self.gateway,
        }
        for header, field in (
            ("x-kaizen-estimated-cost", "estimated_cost_usd"),
            ("x-kaizen-estimated-tokens", "estimated_tokens"),
        ):
            if (raw := facts.headers.get(header)) is not None:
                context[field] = _estimate(header, raw)
        input: dict[str, Any] = {
            "principal": principal,
            "action": mapped.action,
            "resource": {
                "type": mapped.resource_type,
                "id": mapped.resource_id,
                "workspace": workspace,
                "attributes": dict(mapped.attributes),
            },
            "channel": mapped.channel,
            "request": {
                "method": facts.method.upper(),
                "path": facts.path,
                "source_ip": facts.source_ip,
            },
            "context": context,
        }
        if mapped.body_sha256 is not None:  # what an approval grant for this call binds
            input["request"]["body_sha256"] = mapped.body_sha256
        if mapped.tool is not None:
            input["tool"] = dict(mapped.tool)
        return input

    async def settle(self, decision_id: str, actual: Mapping[str, float]) -> int:
        """Replace a decision's reservations by real use; the number settled (0: unknown)."""
        await self.drain()
        served = [s.organization for s in self.tenants.snapshots()] if self.tenants else []
        snapshot = self.holder.current
        if snapshot is not None:
            served = [snapshot.organization]
        reservations = await self._take(served, decision_id)
        if reservations is None and self.budgets is not None:
            await asyncio.sleep(SETTLE_RETRY_SECONDS)
            reservations = await self._take(served, decision_id)
        if not reservations:
            return 0
        ledger = self.holder.ledger
        for reservation in reservations:
            used = actual.get(reservation.key.metric, reservation.amount)
            ledger.settle(reservation.key, reservation.amount, used)
        return len(reservations)

    async def _take(self, served: Sequence[str], decision_id: str) -> list[Reservation] | None:
        # Only the served organisations' reservations (tenants may share one Redis).
        for organization in served:
            if reservations := await self.reservations.take(organization, decision_id):
                return reservations
        return None

    async def _record(
        self,
        verdict: Verdict,
        input: dict[str, Any] | None,
        result: dict[str, Any] | None,
        elapsed: float,
    ) -> None:
        assert self.sink is not None
        record = {
            "decision_id": verdict.decision_id,
            "time": now_text(),
            "input": input if input is not None else {},
            "result": result if result is not None else verdict.body(),
            "duration_us": int(elapsed * 1_000_000),
            "instance": self.instance,
        }
        try:
            await self.sink.append(record)
        except Exception as exc:
            metrics.LOG_FAILURES.inc()
            log.error("decision %s was not logged: %s", verdict.decision_id, exc)


def _claim_if_route_allows(
    engine: DecisionEngine, input: dict[str, Any], mapped: MappedRequest
) -> dict[str, Any]:
    """The input with the claimed channel only if the route's own channel is allowed.

    A claimed channel (X-Kaizen-Channel) is the caller's word: policies may allow the CLI
    less, never more. So the route's channel is asked first (RBAC + ABAC, nothing
    reserved); unless it allows, the claim is dropped and the route's channel decides.
    """
    probe = engine.begin({**input, "channel": mapped.route_channel})
    if isinstance(probe, Decision) and probe.outcome != "allow":
        return {**input, "channel": mapped.route_channel}
    return input


def _estimate(header: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise MappingError(f"{header} must be a number, got {raw[:32]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise MappingError(f"{header} must be a finite number of at least 0")
    return value


def _is_mcp(path: str) -> bool:
    return path == "/mcp" or path.startswith(("/mcp?", "/mcp/"))
