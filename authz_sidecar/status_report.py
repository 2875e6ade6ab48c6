"""Status heartbeat: `POST /api/v1/gateways/self/status` every `interval` seconds.

Body (docs/runtime-protocols.md): `{instance, bundle_revision, key_id, last_sync, decisions:
{outcome: count}, log_backlog, started_at, bundle_verification_failures,
last_verification_error, budgets: [{name, scope, metric, period, window, used, limit,
soft_limit}]}`; `status_body` builds it from the bundle
store, the sync and the decision logs. Failures are logged (once per outage at warning
level) and never raised: a sidecar keeps deciding while the control plane is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from authz_sidecar.decision_log import DecisionBuffer
from policy.bundles.bundle_store import BundleStore
from policy.bundles.bundle_sync import BundleSync, Reconnect, credential_refused_message
from policy.engine.budgets import BudgetKey, BudgetLedger, period_window

__all__ = ["StatusReporter", "status_body"]

logger = logging.getLogger(__name__)


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def budget_usage(
    budgets: Sequence[Mapping[str, Any]], ledger: BudgetLedger, now: datetime, organization: str
) -> list[dict[str, Any]]:
    """Each budget's counter in its current period window; empty while the ledger (Redis)
    is unreachable — the next report catches up."""
    out = []
    try:
        for budget in budgets:
            window = period_window(str(budget["period"]), now)
            scope, metric = str(budget["scope"]), str(budget["metric"])
            used = ledger.usage(BudgetKey(organization, scope, metric, window))
            out.append(
                {
                    "name": budget["name"],
                    "scope": budget["scope"],
                    "metric": budget["metric"],
                    "period": budget["period"],
                    "window": window,
                    "used": used,
                    "limit": budget["limit"],
                    "soft_limit": budget.get("soft_limit"),
                }
            )
    except Exception as exc:  # a report without usage beats no report
        logger.warning("budget usage left out of the status report: %s", exc)
        return []
    return out


def status_body(
    *,
    instance: str,
    started_at: datetime,
    store: BundleStore,
    sync: BundleSync | None,
    logs: Sequence[DecisionBuffer] = (),
    decisions: Mapping[str, int] | None = None,
    budgets: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The status document for this sidecar instance."""
    current = store.current
    return {
        "instance": instance,
        "bundle_revision": current.revision_number if current is not None else None,
        "key_id": current.key_id if current is not None else None,
        "last_sync": _rfc3339(sync.last_sync if sync is not None else None),
        "decisions": dict(decisions or {}),
        "log_backlog": sum(log.backlog for log in logs),
        "started_at": _rfc3339(started_at),
        # Bundles refused since start (bad signature, unknown key, wrong scope, older
        # revision): the control plane raises a security event when this grows.
        "bundle_verification_failures": sync.refused if sync is not None else 0,
        "last_verification_error": sync.last_refusal if sync is not None else None,
        "budgets": list(budgets),
    }


class StatusReporter:
    """Posts `snapshot()` as this instance's status until cancelled."""

    def __init__(
        self,
        control_plane_url: str,
        token: str,
        snapshot: Callable[[], dict[str, Any]],
        interval: float = 10.0,
        *,
        client: httpx.AsyncClient | None = None,
        reconnect: Reconnect | None = None,
        path: str = "/api/v1/gateways/self/status",  # a shared sidecar: per organisation
    ) -> None:
        self.url = control_plane_url.rstrip("/") + path
        self._token = token
        self.snapshot = snapshot
        self.interval = interval
        self._client = client
        self._reconnect = reconnect
        self.reported = 0
        self.failures = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"StatusReporter({self.url!r})"

    async def run(self) -> None:
        client = self._client or httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        try:
            while True:
                await self.report_once(client)
                await asyncio.sleep(self.interval)
        finally:
            if self._client is None:
                await client.aclose()

    async def report_once(self, client: httpx.AsyncClient) -> bool:
        """One report; True when the control plane took it. Never raises but cancellation."""
        try:
            body = self.snapshot()
            response = await client.post(
                self.url, json=body, headers={"Authorization": f"Bearer {self._token}"}
            )
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            return self._failed(f"status report to {self.url} failed: {exc!r}")
        except Exception as exc:  # a broken snapshot must not stop the sidecar
            logger.exception("status snapshot failed")
            return self._failed(f"status snapshot failed: {exc!r}")
        if response.status_code in (401, 403):
            return self._failed(
                credential_refused_message(response.status_code, "reporting status")
            )
        if response.status_code >= 300:
            return self._failed(
                f"status report answered HTTP {response.status_code}: {response.text[:200]}"
            )
        if self.last_error is not None:
            logger.info("status reports reach the control plane again")
            if self._reconnect is not None:
                self._reconnect.reached()
        self.reported += 1
        self.last_error = None
        return True

    def _failed(self, message: str) -> bool:
        self.failures += 1
        level = logging.WARNING if self.last_error is None else logging.DEBUG
        self.last_error = message
        logger.log(level, "%s", message)
        return False
