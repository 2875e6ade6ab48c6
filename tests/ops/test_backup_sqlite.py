"""`kaizen-studio backup` / `restore` on the embedded SQLite database, and the refusals:
an altered backup, the wrong master key, an existing database without --force."""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
from pathlib import Path

import pytest

from kaizen_studio.backup import BackupError, backup, libpq, restore
from kaizen_studio.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("KAIZEN_DATABASE_URL", "KAIZEN_MASTER_KEY", "KAIZEN_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAIZEN_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    assert main(["db", "upgrade"]) == 0
    database = tmp_path / "home" / "kaizen.db"
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)",
            ("0" * 32, "Acme", "2026-01-01 00:00:00"),
        )
    return tmp_path


def test_round_trip_through_the_cli(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", str(home / "b")]) == 0
    manifest = json.loads((home / "b" / "manifest.json").read_text())
    assert manifest["database"] == "sqlite"
    assert manifest["organizations"] == 1
    assert manifest["master_key_included"] is False
    (home / "home" / "kaizen.db").unlink()  # the disaster
    assert main(["restore", str(home / "b")]) == 0
    assert "every audit and decision chain is intact" in capsys.readouterr().out
    assert main(["verify"]) == 0
    assert "checked 1 organisation(s)" in capsys.readouterr().out
    with sqlite3.connect(home / "home" / "kaizen.db") as connection:
        assert connection.execute("SELECT name FROM organizations").fetchall() == [("Acme",)]


def test_restore_refuses_an_existing_database_without_force(home: Path) -> None:
    assert main(["backup", str(home / "b")]) == 0
    assert main(["restore", str(home / "b")]) == 2
    assert main(["restore", str(home / "b"), "--force"]) == 0


def test_restore_refuses_an_altered_backup(home: Path) -> None:
    from control_plane.settings import Settings

    backup(Settings(), home / "b")
    with (home / "b" / "kaizen.db").open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\xff")
    with pytest.raises(BackupError, match="altered"):
        restore(Settings(), home / "b", force=True)


def test_restore_refuses_the_wrong_master_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from control_plane.settings import Settings

    backup(Settings(), home / "b")
    monkeypatch.setenv("KAIZEN_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    with pytest.raises(BackupError, match="sealed under master key"):
        restore(Settings(), home / "b", force=True)


def test_the_master_key_is_written_only_when_asked(home: Path) -> None:
    from control_plane.settings import Settings

    backup(Settings(), home / "with", include_master_key=True)
    key = home / "with" / "master.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert base64.b64decode(key.read_bytes()) == base64.b64decode(Settings().master_key or "")
    with pytest.raises(BackupError, match="not empty"):
        backup(Settings(), home / "with")


def test_passwords_stay_off_the_command_line() -> None:
    dsn, env = libpq("postgresql+asyncpg://kaizen:s3cret@db.internal:5432/kaizen")
    assert dsn == "postgresql://kaizen@db.internal:5432/kaizen"
    assert env == {"PGPASSWORD": "s3cret"}
