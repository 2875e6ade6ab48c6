"""OPA's decision-log upload format: stock OPA agents' events as stored decisions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from control_plane.errors import Invalid
from control_plane.schemas.decisions import OpaEvent
from control_plane.services.gateways import GatewayIdentity
from control_plane.services.ingest import decision_row, inflate

OUTCOMES = ("allow", "deny", "require_approval")


def read_opa_upload(body: bytes, content_encoding: str | None, limit: int) -> list[Any]:
    """The JSON array of an OPA upload: gzip (OPA's default; also recognised without the
    header) or plain, at most `limit` bytes once decompressed."""
    body = inflate(body, content_encoding, limit)
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Invalid(
            "body: not JSON", details=[{"field": "body", "message": "not JSON"}]
        ) from None
    if not isinstance(events, list):
        raise Invalid(
            "body: expected a JSON array of decision events",
            details=[{"field": "body", "message": "expected a JSON array"}],
        )
    return events


_OPA_EVENTS = TypeAdapter(list[OpaEvent])


def opa_events(raw: list[Any]) -> list[OpaEvent]:
    try:
        return _OPA_EVENTS.validate_python(raw)
    except ValidationError as error:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in error.errors()
        ]
        raise Invalid(f"{details[0]['field']}: {details[0]['message']}", details=details) from None


def opa_outcome(result: Any) -> tuple[str, list[str]]:
    """allow/deny from a boolean or `{allow: bool}`; our own output shape as it is."""
    if isinstance(result, bool):
        return ("allow" if result else "deny"), []
    if result is None:
        return "deny", ["undefined result"]
    if isinstance(result, dict):
        reasons = result.get("reasons")
        if not isinstance(reasons, list):
            deny = result.get("deny")
            reasons = sorted(str(r) for r in deny) if isinstance(deny, list | dict) else []
        if result.get("outcome") in OUTCOMES:
            return str(result["outcome"]), [str(r) for r in reasons]
        if isinstance(result.get("allow"), bool):
            return ("allow" if result["allow"] else "deny"), [str(r) for r in reasons]
    return "unknown", []


def _opa_revision(bundles: dict[str, Any] | None) -> str | None:
    for name in sorted(bundles or {}):
        revision = (bundles or {})[name]
        if isinstance(revision, dict) and revision.get("revision") not in (None, ""):
            return str(revision["revision"])
    return None


def _opa_duration_us(metrics: dict[str, Any] | None) -> int | None:
    for key in ("timer_server_handler_ns", "timer_rego_query_eval_ns"):
        value = (metrics or {}).get(key)
        if isinstance(value, int) and 0 <= value < 2**62:
            return value // 1000
    return None


def opa_rows(identity: GatewayIdentity, events: Sequence[OpaEvent]) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        outcome, reasons = opa_outcome(event.result)
        revision = _opa_revision(event.bundles)
        opa = {
            "path": event.path,
            "result": event.result,
            "bundles": event.bundles,
            "labels": event.labels,
            "requested_by": event.requested_by,
            "erased": event.erased,
            "masked": event.masked,
            "metrics": event.metrics,
        }
        result = {
            "decision_id": event.decision_id,
            "outcome": outcome,
            "reasons": reasons,
            "bundle_revision": revision,
            "opa": {k: v for k, v in opa.items() if v is not None},
        }
        decision_input = event.input if isinstance(event.input, dict) else {}
        if event.input is not None and not isinstance(event.input, dict):
            decision_input = {"value": event.input}
        labels = event.labels or {}
        rows.append(
            decision_row(
                identity.organization_id,
                identity.gateway_id,
                decision_id=event.decision_id,
                time=event.timestamp,
                decision_input=decision_input,
                result=result,
                duration_us=_opa_duration_us(event.metrics),
                instance=labels.get("id") if isinstance(labels.get("id"), str) else None,
                source="opa",
            )
        )
    return rows
