"""A shared platform gateway's decision logs: one crash-safe buffer per organisation,
each shipped to `/api/v1/platform/organizations/{org}/decisions/ingest` (ADR 0012).

A record goes to the buffer of the organisation its principal belongs to — the one whose
bundle decided it (`authz_sidecar/tenancy.py`); a record with no principal (the caller
never authenticated, so no organisation is known) is counted and kept nowhere: filing it
under any organisation would show one tenant another's traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from authz_sidecar.decision_log import DecisionBuffer
from policy.bundles.bundle_sync import Backoff

log = logging.getLogger(__name__)


def ingest_path(organization: str) -> str:
    return f"/api/v1/platform/organizations/{quote(organization, safe='')}/decisions/ingest"


class TenantLogs:
    """`append` routes each record to its organisation's `DecisionBuffer`, opened (and its
    shipping started) on the first record of that organisation."""

    def __init__(
        self,
        directory: Path,
        *,
        mask: Sequence[str] = (),
        ship: Callable[[str, DecisionBuffer], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.directory = directory
        self._mask = mask
        self._ship = ship
        self.buffers: dict[str, DecisionBuffer] = {}
        self._shipping: dict[str, asyncio.Task[None]] = {}
        self.unattributed = 0  # records of callers who never authenticated

    @property
    def backlog(self) -> int:
        return sum(buffer.backlog for buffer in self.buffers.values())

    def buffer(self, organization: str) -> DecisionBuffer:
        buffer = self.buffers.get(organization)
        if buffer is None:
            if "/" in organization or organization in ("", ".", ".."):
                raise ValueError(f"organisation {organization[:64]!r} is not a directory name")
            buffer = self.buffers[organization] = DecisionBuffer(
                self.directory / organization, mask=self._mask
            )
            if self._ship is not None:
                self._shipping[organization] = asyncio.get_running_loop().create_task(
                    self._ship(organization, buffer)
                )
        return buffer

    def resume(self) -> None:
        """Open (and ship) the buffers left on disk by an earlier run."""
        if self.directory.is_dir():
            for entry in sorted(self.directory.iterdir()):
                if entry.is_dir():
                    self.buffer(entry.name)

    async def append(self, record: dict[str, Any]) -> None:
        principal = record.get("input", {}).get("principal")
        organization = principal.get("organization") if isinstance(principal, dict) else None
        if not isinstance(organization, str):
            self.unattributed += 1
            return
        await self.buffer(organization).append(record)

    async def close(self) -> None:
        for task in self._shipping.values():
            task.cancel()
        await asyncio.gather(*self._shipping.values(), return_exceptions=True)
        for buffer in self.buffers.values():
            await buffer.close()


def shipper(
    control_plane_url: str, token: str, backoff: Callable[[], Backoff]
) -> Callable[[str, DecisionBuffer], Coroutine[Any, Any, None]]:
    """Ship one organisation's buffer with the platform credential until cancelled."""

    async def ship(organization: str, buffer: DecisionBuffer) -> None:
        await buffer.ship_forever(
            control_plane_url, token, backoff=backoff(), path=ingest_path(organization)
        )

    return ship
