"""Migration 0005 chains the rows it moves with its own frozen copy of the chain format
(v1): pinned here to a golden value and, while the service still writes v1, to the
service's own `link`, so neither can drift unnoticed."""

from __future__ import annotations

import importlib.util
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from control_plane.services import decision_chain

VERSIONS = Path(__file__).parents[2] / "control_plane/db/migrations/versions"
RECORD: dict[str, Any] = {
    "id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
    "organization_id": uuid.UUID("00000000-0000-4000-8000-000000000002"),
    "sequence": 7,
    "decision_id": "d-1",
    "time": datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC),
    "created_at": datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC),
    "source": "sidecar",
    "gateway_id": None,
    "instance": "pod-ä",
    "principal": "user:alice@example.com",
    "action": "invoke",
    "resource": "agent:support-bot",
    "workspace": None,
    "channel": "api",
    "outcome": "allow",
    "reasons": ["rbac: agent-user", "ünïcode ✓"],
    "bundle_revision": 3,
    "duration_us": 41,
    "input": {"b": 1.5, "a": [1, 2, {"z": None, "y": "\u2028"}], "big": 2**53 + 1},
    "result": {"outcome": "allow", "cost": 0.1},
}
GOLDEN = "6314ee708127e94954baeb3351eb4a3f12254ecb8700eb516126eae466c96f9b"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("m0005", VERSIONS / "0005_decision_store.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_frozen_chain_link_is_v1() -> None:
    frozen = _migration()
    assert frozen.link(frozen.GENESIS, RECORD) == GOLDEN
    assert decision_chain.link(decision_chain.GENESIS, RECORD) == GOLDEN


def test_no_migration_imports_live_code() -> None:
    """History is frozen: a migration that imported services or models would change
    meaning whenever they do."""
    importing = [
        path.name
        for path in sorted(VERSIONS.glob("*.py"))
        if any(
            line.startswith(("import ", "from ")) and "control_plane" in line
            for line in path.read_text().splitlines()
        )
    ]
    assert not importing
