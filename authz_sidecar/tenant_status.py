"""A shared platform gateway's status reports (ADR 0012): one per served organisation.

Every `interval` seconds, for each organisation the sidecar serves, the same document a
dedicated sidecar reports (`status_report.status_body`) — that organisation's bundle, its
sync's refusals, its decision-log backlog and its budgets' counters — posted to
`/api/v1/platform/organizations/{org}/status`. The control plane files it under the
organisation's handle on the shared gateway, so its fleet view shows the instance and its
plan's 90 % warning is raised from these counters as from a dedicated sidecar's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from authz_sidecar.status_report import StatusReporter, budget_usage, status_body
from authz_sidecar.tenancy import Tenants
from authz_sidecar.tenant_logs import TenantLogs
from policy.bundles.bundle_sync import Reconnect
from policy.bundles.platform_sync import PlatformSync


def status_path(organization: str) -> str:
    return f"/api/v1/platform/organizations/{quote(organization, safe='')}/status"


def _constant(body: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: body


class TenantStatusReporter:
    """Reports each served organisation's status until cancelled."""

    def __init__(
        self,
        control_plane_url: str,
        token: str,
        *,
        instance: str,
        tenants: Tenants,
        platform: PlatformSync,
        logs: TenantLogs | None,
        interval: float = 10.0,
        reconnect: Reconnect | None = None,
    ) -> None:
        self._url = control_plane_url
        self._token = token
        self._instance = instance
        self._tenants = tenants
        self._platform = platform
        self._logs = logs
        self.interval = interval
        self._reconnect = reconnect
        self.started_at = datetime.now(UTC)
        self.reporters: dict[str, StatusReporter] = {}

    def body(self, organization: str) -> dict[str, Any] | None:
        """The status document of one organisation; None when it is not served (now)."""
        store = self._platform.stores.get(organization)
        holder = self._tenants.holders.get(organization)
        snapshot = holder.current if holder is not None else None
        if store is None or snapshot is None:
            return None
        buffer = self._logs.buffers.get(organization) if self._logs is not None else None
        budgets = snapshot.bundle.compiled.kaizen.get("budgets", [])
        return status_body(
            instance=self._instance,
            started_at=self.started_at,
            store=store,
            sync=self._platform.syncs.get(organization),
            logs=[buffer] if buffer is not None else [],
            budgets=budget_usage(budgets, self._tenants.ledger, datetime.now(UTC), organization),
        )

    async def report_once(self, client: httpx.AsyncClient) -> int:
        """One round; how many organisations' reports the control plane took."""
        taken = 0
        for organization in sorted(self._platform.stores):
            body = self.body(organization)
            if body is None:
                continue
            reporter = self.reporters.get(organization)
            if reporter is None:
                reporter = self.reporters[organization] = StatusReporter(
                    self._url,
                    self._token,
                    lambda: {},
                    reconnect=self._reconnect,
                    path=status_path(organization),
                )
            reporter.snapshot = _constant(body)
            taken += await reporter.report_once(client)
        return taken

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
            while True:
                await self.report_once(client)
                await asyncio.sleep(self.interval)
