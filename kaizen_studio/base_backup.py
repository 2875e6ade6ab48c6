"""`kaizen-studio backup --base DIR`: a PostgreSQL base backup for point-in-time recovery.

With WAL archiving on (`archive_mode = on`, an `archive_command`, `archive_timeout = 60s`;
README "Running at scale"), a base backup plus the archived WAL recover the database to
any moment after the backup: `restore_command` and `recovery_target_time`, done by
PostgreSQL itself, then `kaizen-studio verify`. The directory holds `base/` (what
`pg_basebackup --format=tar --gzip --wal-method=fetch` writes: `base.tar.gz`, with the WAL
the backup needs to be consistent on its own, and PostgreSQL's `backup_manifest`) and
`manifest.json` like the logical backup's (`kind: base`, the SHA-256 of `base.tar.gz`, the
master key's id, row counts read after the backup). `kaizen-studio restore` refuses it:
a physical backup goes back under PostgreSQL, not through a client.

The database role needs the REPLICATION attribute and a `replication` line in
`pg_hba.conf` (managed PostgreSQL: your provider's PITR replaces this command).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from control_plane.settings import Settings
from kaizen_studio import backup as logical

KIND = "base"
ARCHIVE = "base/base.tar.gz"


def base_backup(
    settings: Settings, directory: Path, *, include_master_key: bool = False
) -> dict[str, Any]:
    """`pg_basebackup` of the configured PostgreSQL into `directory` (new or empty)."""
    if settings.is_sqlite:
        raise logical.BackupError(
            "--base is for PostgreSQL (WAL archiving and point-in-time recovery); back up "
            "SQLite with `kaizen-studio backup DIR`"
        )
    if directory.exists() and any(directory.iterdir()):
        raise logical.BackupError(f"{directory} is not empty: give a new directory per backup")
    url = settings.resolved_database_url
    key = logical._master_key(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.perf_counter()
    dsn, env = logical.libpq(url)
    label = f"kaizen-studio {datetime.now(UTC).isoformat(timespec='seconds')}"
    logical._run(
        [
            "pg_basebackup",
            f"--dbname={dsn}",
            f"--pgdata={directory / 'base'}",
            "--format=tar",
            "--gzip",
            "--wal-method=fetch",
            "--checkpoint=fast",
            f"--label={label}",
        ],
        "pg_basebackup",
        env,
    )
    archive = directory / ARCHIVE
    manifest = {
        "format": logical.FORMAT,
        "kind": KIND,
        "created_at": datetime.now(UTC).isoformat(),
        "database": "postgresql",
        "file": ARCHIVE,
        "bytes": archive.stat().st_size,
        "sha256": logical._sha256(archive),
        "master_key_id": logical._key_id(key),
        "master_key_included": include_master_key,
        "seconds": round(time.perf_counter() - started, 3),
        "label": label,
        **asyncio.run(logical._summary(url)),
    }
    if include_master_key:
        fd = os.open(directory / "master.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64encode(key))
    (directory / logical.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
