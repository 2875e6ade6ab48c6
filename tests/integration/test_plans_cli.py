"""`kaizen-studio org set-plan` (M12) as an operator runs it: a real process on the
embedded SQLite database, no Stripe and no running control plane needed."""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAIZEN_HOME": str(home),
        "KAIZEN_DATABASE_URL": f"sqlite+aiosqlite:///{home}/kaizen.db",
        "KAIZEN_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "KAIZEN_LOG_JSON": "false",
    }
    env.pop("KAIZEN_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "kaizen_studio.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _plan(home: Path, org: uuid.UUID) -> tuple[str, str] | None:
    with sqlite3.connect(home / "kaizen.db") as db:
        row = db.execute(
            "SELECT plan, overrides FROM organization_plans WHERE organization_id = ?", (org.hex,)
        ).fetchone()
    return None if row is None else (row[0], row[1])


def test_the_operator_sets_an_organisations_plan(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    org = uuid.uuid4()
    with sqlite3.connect(tmp_path / "kaizen.db") as db:
        db.execute(
            "INSERT INTO organizations (id, name, created_at) VALUES (?, 'Acme', ?)",
            (org.hex, datetime.now(UTC).isoformat()),
        )
        db.execute(
            "INSERT INTO gateways (id, created_at, organization_id, name, environment, url, mode,"
            " credential_prefix, credential_hash) VALUES (?, ?, ?, 'a', 'prod', 'http://a', "
            "'dedicated', 'kgw_', ?), (?, ?, ?, 'b', 'prod', 'http://b', 'dedicated', 'kgw_', ?)",
            (
                *(uuid.uuid4().hex, datetime.now(UTC).isoformat(), org.hex, "h1"),
                *(uuid.uuid4().hex, datetime.now(UTC).isoformat(), org.hex, "h2"),
            ),
        )

    moved = _cli(
        tmp_path,
        "org",
        "set-plan",
        "Acme",
        "enterprise",
        "--limit",
        "gateways=2",
        "--limit",
        "agents=unlimited",
    )
    assert moved.returncode == 0, moved.stderr
    assert "Free -> Enterprise: users unlimited, agents unlimited, gateways 2" in moved.stdout
    assert "nothing is published yet" in moved.stdout
    assert _plan(tmp_path, org) == ("enterprise", '{"gateways": 2, "agents": null}')

    # Two gateways: Pro allows one. Explained, nothing changed.
    refused = _cli(tmp_path, "org", "set-plan", str(org), "pro")
    assert refused.returncode == 2
    assert "gateways: 2 gateways, the plan allows 1" in refused.stderr
    assert _plan(tmp_path, org) == ("enterprise", '{"gateways": 2, "agents": null}')

    fixed = _cli(tmp_path, "org", "set-plan", str(org), "pro", "--limit", "gateways=3")
    assert fixed.returncode == 2
    assert "the Pro plan has fixed limits" in fixed.stderr
    bad = _cli(tmp_path, "org", "set-plan", str(org), "enterprise", "--limit", "gateways=many")
    assert bad.returncode == 2
    assert "a whole number or 'unlimited'" in bad.stderr
    unknown = _cli(tmp_path, "org", "set-plan", "Nobody", "pro")
    assert unknown.returncode == 2
    assert "no organisation named 'Nobody'" in unknown.stderr
