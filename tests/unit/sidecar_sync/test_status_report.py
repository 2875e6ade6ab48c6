"""status_body: the status document of proto/README.md from the sidecar's parts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from authz_sidecar.decision_log import DecisionLog  # noqa: TID251
from authz_sidecar.status_report import status_body  # noqa: TID251
from policy.bundle_store import BundleStore
from policy.bundle_sync import BundleSync

from .conftest import ORG, BundleFactory


async def test_status_body_has_the_protocol_shape(
    tmp_path: Path, make_bundle: BundleFactory, jwks: dict[str, Any]
) -> None:
    store = BundleStore(tmp_path / "bundles", scope=ORG)
    store.install(make_bundle(7), jwks)
    sync = BundleSync(store, "http://cp.test", "kgw_x")
    sync.last_sync = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    sync.refused, sync.last_refusal = 2, "bundle signature does not verify"
    log = DecisionLog(tmp_path / "log")
    await log.append({"decision_id": "d-1", "input": {}, "result": {}})

    body = status_body(
        instance="host/1",
        started_at=datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
        store=store,
        sync=sync,
        logs=[log],
        decisions={"allow": 3},
    )
    await log.close()

    assert body == {
        "instance": "host/1",
        "bundle_revision": 7,
        "key_id": "cp-key-1",
        "last_sync": "2026-11-26T12:00:00Z",
        "decisions": {"allow": 3},
        "log_backlog": 1,
        "started_at": "2026-11-26T11:00:00Z",
        "bundle_verification_failures": 2,
        "last_verification_error": "bundle signature does not verify",
    }


def test_status_body_before_any_bundle(tmp_path: Path) -> None:
    body = status_body(
        instance="host/1",
        started_at=datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
        store=BundleStore(tmp_path),
        sync=None,
    )
    assert (body["bundle_revision"], body["key_id"], body["last_sync"]) == (None, None, None)
