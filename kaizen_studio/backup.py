"""`kaizen-studio backup` / `restore`: the database, and the master key handled explicitly.

A backup is a directory: the database (PostgreSQL: `pg_dump --format=custom`; SQLite: a
copy by SQLite's online backup API, consistent while the control plane runs), and
`manifest.json` (what it holds, its SHA-256, the schema revision, row counts, and the id of
the master key that seals its signing keys and data keys). The master key itself is left
out unless `--include-master-key` (then `master.key`, 0600): keep it in your secret store,
apart from the backups, or a stolen backup is a stolen key.

`restore` checks the file against the manifest, refuses a master key that is not the one
the backup was sealed under, refuses a database that is not empty (unless `--force`),
restores, proves the signing keys unseal, and verifies every organisation's audit and
decision hash chains end to end; it prints how long the restore and the verification took.

`backup --base DIR` takes a PostgreSQL base backup instead (`base_backup.py`), for
point-in-time recovery with WAL archiving; PostgreSQL recovers it, `verify` checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from control_plane.settings import Settings
from policy.runtime.cpus import available_cpus

MANIFEST = "manifest.json"
FORMAT = 1


class BackupError(Exception):
    """A refusal with the reason an operator can act on."""


@dataclass(frozen=True)
class ChainCheck:
    organization: str
    audit_events: int
    audit_ok: bool
    decisions: int
    decisions_ok: bool
    problem: str | None = None


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """The SQLAlchemy URL as pg_dump/pg_restore take it (no `+driver`), and the password
    apart, for PGPASSWORD: a command line is visible to every user of the machine."""
    parsed = make_url(url)
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    bare = parsed.set(drivername="postgresql")._replace(password=None)  # set() keeps a None
    return bare.render_as_string(hide_password=False), env


def _sqlite_path(url: str) -> Path:
    return Path(url.split("///", 1)[1])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _master_key(settings: Settings) -> bytes:
    from control_plane.services.crypto import load_master_key

    return load_master_key(settings)


def _key_id(key: bytes) -> str:
    from control_plane.services.secrets.envelope import master_key_id

    return master_key_id(key)


def _run(args: list[str], what: str, env: dict[str, str]) -> None:
    tool = shutil.which(args[0])
    if tool is None:
        raise BackupError(f"{args[0]} is not installed (PostgreSQL client tools, version ≥ server)")
    done = subprocess.run(  # noqa: S603  (our own tool and arguments, no shell)
        [tool, *args[1:]], capture_output=True, text=True, check=False, env={**os.environ, **env}
    )
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip()[:2000]}")


async def _summary(url: str) -> dict[str, Any]:
    from control_plane.db.models.decisions import DecisionLog
    from control_plane.db.models.identity import AuditEvent, Organization
    from control_plane.db.session import SYSTEM, Database

    db = Database(url)
    try:
        async with db.session(SYSTEM) as session:
            revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
            return {
                "alembic_revision": revision,
                "organizations": await session.scalar(select(func.count(Organization.id))),
                "audit_events": await session.scalar(select(func.count(AuditEvent.id))),
                "decisions": await session.scalar(select(func.count()).select_from(DecisionLog)),
            }
    finally:
        await db.dispose()


def backup(
    settings: Settings, directory: Path, *, include_master_key: bool = False
) -> dict[str, Any]:
    """Write a backup of the configured database into `directory` (created, must be empty)."""
    url = settings.resolved_database_url
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: give a new directory per backup")
    key = _master_key(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.perf_counter()
    if settings.is_sqlite:
        name = "kaizen.db"
        source = sqlite3.connect(_sqlite_path(url))
        target = sqlite3.connect(directory / name)
        try:
            with target:
                source.backup(target)  # SQLite's online backup: consistent while in use
        finally:
            target.close()
            source.close()
    else:
        name = "database.dump"
        dsn, env = libpq(url)
        dump = ["pg_dump", "--format=custom", "--compress=6", f"--file={directory / name}"]
        _run([*dump, f"--dbname={dsn}"], "pg_dump", env)
    summary = asyncio.run(_summary(url))
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "database": "sqlite" if settings.is_sqlite else "postgresql",
        "file": name,
        "bytes": (directory / name).stat().st_size,
        "sha256": _sha256(directory / name),
        "master_key_id": _key_id(key),
        "master_key_included": include_master_key,
        "seconds": round(time.perf_counter() - started, 3),
        **summary,
    }
    if include_master_key:
        fd = os.open(directory / "master.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64encode(key))
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{directory / MANIFEST}: not a Kaizen backup ({error})") from error
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{directory}: backup format {manifest.get('format')!r} is not {FORMAT}")
    path = directory / str(manifest["file"])
    if not path.is_file() or _sha256(path) != manifest["sha256"]:
        raise BackupError(f"{path}: missing or altered (its SHA-256 differs from the manifest)")
    return manifest


async def _is_empty(url: str) -> bool:
    from control_plane.db.session import SYSTEM, Database

    db = Database(url)
    try:
        async with db.session(SYSTEM) as session:
            found = await session.scalar(text("SELECT to_regclass('public.alembic_version')"))
            return found is None
    finally:
        await db.dispose()


async def verify_chains(url: str, master_key: bytes) -> list[ChainCheck]:
    """Unseal the signing keys, then walk every organisation's audit and decision chains."""
    from control_plane.db.models.identity import Organization
    from control_plane.db.session import SYSTEM, Database
    from control_plane.services import audit, decision_chain
    from control_plane.services.keys import KeyRing

    db = Database(url)
    try:
        try:
            await KeyRing(db, master_key, max_token_ttl=900).reload()
        except Exception as error:  # any failure to unseal: the wrong key or damaged rows
            raise BackupError(
                f"the restored signing keys do not unseal with this master key ({error!r})"
            ) from error
        async with db.session(SYSTEM) as session:
            organizations = list(await session.scalars(select(Organization.id)))
        checks = []
        for organization in organizations:
            checks.append(await _check(db, organization, audit, decision_chain))
        return checks
    finally:
        await db.dispose()


async def _check(db: Any, organization: uuid.UUID, audit: Any, decision_chain: Any) -> ChainCheck:
    async with db.session(organization) as session:
        trail = await audit.verify_chain(session)
    chain = await decision_chain.verify(lambda: db.session(organization))
    problem = None
    if not trail.valid:
        problem = f"audit chain broken at event {trail.first_broken_seq}: {trail.reason}"
    elif not chain.ok:
        broken = chain.first_broken
        problem = f"decision chain broken at {broken.sequence}: {broken.reason}" if broken else None
    return ChainCheck(
        str(organization), trail.events, trail.valid, chain.checked, chain.ok, problem
    )


def restore(settings: Settings, directory: Path, *, force: bool = False) -> dict[str, Any]:
    """Restore `directory` into the configured database, then verify it end to end."""
    manifest = _read_manifest(directory)
    if manifest.get("kind") == "base":
        raise BackupError(
            f"{directory} is a base backup: PostgreSQL recovers it (restore_command and "
            'recovery_target_time, README "Running at scale"), then run `kaizen-studio verify`'
        )
    url = settings.resolved_database_url
    kind = "sqlite" if settings.is_sqlite else "postgresql"
    if manifest["database"] != kind:
        raise BackupError(f"a {manifest['database']} backup cannot be restored into {kind}")
    key = _master_key(settings)
    if _key_id(key) != manifest["master_key_id"]:
        raise BackupError(
            f"this backup is sealed under master key {manifest['master_key_id']}; "
            f"KAIZEN_MASTER_KEY is {_key_id(key)}. Set the backup's master key (or rotate "
            "after restoring with KAIZEN_MASTER_KEY_PREVIOUS)"
        )
    source = directory / str(manifest["file"])
    started = time.perf_counter()
    if kind == "sqlite":
        target_path = _sqlite_path(url)
        if target_path.exists() and not force:
            raise BackupError(f"{target_path} exists: pass --force to replace it")
        target_path.parent.mkdir(parents=True, exist_ok=True)
        backup_db, target = sqlite3.connect(source), sqlite3.connect(target_path)
        try:
            with target:
                backup_db.backup(target)
        finally:
            target.close()
            backup_db.close()
    else:
        if not force and not asyncio.run(_is_empty(url)):
            raise BackupError("the target database is not empty: pass --force to replace it")
        dsn, env = libpq(url)
        args = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error"]
        args += [f"--jobs={available_cpus()}", f"--dbname={dsn}"]
        if force:
            args += ["--clean", "--if-exists"]
        _run([*args, str(source)], "pg_restore", env)
    restored = time.perf_counter() - started
    started = time.perf_counter()
    checks = asyncio.run(verify_chains(url, key))
    verified = time.perf_counter() - started
    summary = asyncio.run(_summary(url))
    for name in ("organizations", "audit_events", "decisions"):
        if summary[name] != manifest[name]:
            raise BackupError(f"restored {summary[name]} {name}, the backup holds {manifest[name]}")
    return {
        "restore_seconds": round(restored, 3),
        "verify_seconds": round(verified, 3),
        "chains": checks,
        **summary,
    }


def cmd_backup(args: argparse.Namespace) -> int:
    from kaizen_studio.base_backup import base_backup

    take = base_backup if args.base else backup
    try:
        manifest = take(
            Settings(), Path(args.directory), include_master_key=args.include_master_key
        )
    except BackupError as error:
        print(f"backup: {error}", file=sys.stderr)
        return 2
    what = "base backup of postgresql" if args.base else f"backed up {manifest['database']}"
    print(
        f"{what} ({manifest['bytes']} bytes, {manifest['decisions']} "
        f"decisions, {manifest['audit_events']} audit events, {manifest['organizations']} "
        f"organisation(s)) to {args.directory} in {manifest['seconds']} s"
    )
    print(f"sealed under master key {manifest['master_key_id']}", end="")
    print(
        " (included: keep this backup as secret as the key)"
        if args.include_master_key
        else " (not included: restore needs it in KAIZEN_MASTER_KEY)"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        report = restore(Settings(), Path(args.directory), force=args.force)
    except BackupError as error:
        print(f"restore: {error}", file=sys.stderr)
        return 2
    broken = [c for c in report["chains"] if c.problem]
    print(
        f"restored {report['decisions']} decisions, {report['audit_events']} audit events, "
        f"{report['organizations']} organisation(s) in {report['restore_seconds']} s; "
        f"verified every chain in {report['verify_seconds']} s"
    )
    for check in broken:
        print(f"organisation {check.organization}: {check.problem}", file=sys.stderr)
    if broken:
        return 1
    print("signing keys unseal; every audit and decision chain is intact")
    return 0


def cmd_verify(_args: argparse.Namespace) -> int:
    """The check `restore` ends with, on the configured database as it is (e.g. after a
    point-in-time recovery from WAL archives, or on a schedule)."""
    settings = Settings()
    started = time.perf_counter()
    try:
        checks = asyncio.run(verify_chains(settings.resolved_database_url, _master_key(settings)))
    except BackupError as error:
        print(f"verify: {error}", file=sys.stderr)
        return 2
    broken = [c for c in checks if c.problem]
    for check in broken:
        print(f"organisation {check.organization}: {check.problem}", file=sys.stderr)
    events, decisions = sum(c.audit_events for c in checks), sum(c.decisions for c in checks)
    print(
        f"checked {len(checks)} organisation(s): {events} audit events, {decisions} decisions "
        f"in {time.perf_counter() - started:.1f} s"
    )
    if broken:
        return 1
    print("signing keys unseal; every audit and decision chain is intact")
    return 0


def register(sub: Any) -> None:
    """`backup DIR [--base] [--include-master-key]`, `restore DIR [--force]` and `verify`."""
    help_backup = "back up the database (pg_dump or SQLite's online backup) into a new directory"
    parser = sub.add_parser("backup", help=help_backup, description=help_backup)
    parser.add_argument("directory", help="where to write the backup (new or empty)")
    parser.add_argument(
        "--base",
        action="store_true",
        help="a PostgreSQL base backup (pg_basebackup) for point-in-time recovery with "
        "WAL archiving, instead of pg_dump",
    )
    parser.add_argument(
        "--include-master-key",
        action="store_true",
        help="also write master.key (0600); otherwise keep KAIZEN_MASTER_KEY apart from backups",
    )
    parser.set_defaults(func=cmd_backup)
    help_restore = "restore a backup into KAIZEN_DATABASE_URL and verify every hash chain"
    parser = sub.add_parser("restore", help=help_restore, description=help_restore)
    parser.add_argument("directory", help="a directory written by `kaizen-studio backup`")
    parser.add_argument("--force", action="store_true", help="replace a database that is not empty")
    parser.set_defaults(func=cmd_restore)
    help_verify = "unseal the signing keys and verify every audit and decision chain"
    parser = sub.add_parser("verify", help=help_verify, description=help_verify)
    parser.set_defaults(func=cmd_verify)
