"""What runs after ingest stores new decisions, inside the same transaction.

Other features (approval requests from `require_approval` decisions, notifications)
register a callback here instead of editing the ingest path:

    from control_plane.services import ingest_hooks

    @ingest_hooks.register
    async def open_approvals(session, stored_rows): ...

Each row is a mapping of the stored `DecisionLog` columns (`decision_id`, `time`,
`organization_id`, `outcome`, `input`, `result`, `sequence`, …). Only newly stored
decisions are passed, never duplicates of earlier ones. A callback that raises rolls the
whole batch back, and the sender retries it; so a callback must be idempotent per
`decision_id` and must not do slow network work in line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

StoredRows = Sequence[Mapping[str, Any]]
Hook = Callable[[AsyncSession, StoredRows], Awaitable[None]]

_hooks: list[Hook] = []


def register(hook: Hook) -> Hook:
    """Add `hook` (once, however often it is registered); usable as a decorator."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def unregister(hook: Hook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


async def after_decisions_stored(session: AsyncSession, stored_rows: StoredRows) -> None:
    """Run every registered callback, in registration order, on the new rows."""
    if not stored_rows:
        return
    for hook in list(_hooks):
        await hook(session, stored_rows)
