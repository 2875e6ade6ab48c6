"""M13 point-in-time recovery drill on a PostgreSQL cluster of the test's own.

initdb + pg_ctl (from /usr/lib/postgresql/*/bin) start a throw-away cluster in a temporary
directory on a free port, with WAL archiving to another temporary directory
(`archive_mode = on`, `archive_timeout = 60s`, as README "Running at scale" asks); the
machine's own PostgreSQL is never touched. A real control plane and sidecar write data
(audited publishes, shipped decisions); `kaizen-studio backup --base` takes the base
backup; more data; the target time is noted; data after it; the cluster is destroyed
(immediate stop, its directory deleted). Recovery: the base backup unpacked, PostgreSQL's
`restore_command` + `recovery_target_time`, promoted; `kaizen-studio verify` proves the
signing keys unseal and every chain is intact, and the rows are exactly those before the
target. The recovery time (destroyed → verified) is printed: the drill's RTO.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import PASSWORD
from tests.e2e import sidecar_procs as procs

POLICY = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:pitr@example.com", role: agent-user}
"""


def _bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt postgresql)")
    return found[-1].parent


class Cluster:
    """A PostgreSQL cluster in `root` on `port`, run as the `postgres` user when we are root
    (PostgreSQL refuses to run as root)."""

    def __init__(self, root: Path, port: int, archive: Path) -> None:
        self.bin, self.root, self.port, self.archive = _bin(), root, port, archive
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.running = False

    def _as_owner(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)

    def _checked(self, *args: str) -> None:
        done = self._as_owner(*args)
        assert done.returncode == 0, f"{args[0]}: {done.stdout}\n{done.stderr}\n{self.logs()}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def settings(self) -> str:
        return (
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.root}'\n"
            "wal_level = replica\n"
            "max_wal_senders = 4\n"
            "archive_mode = on\n"
            f"archive_command = 'test ! -f {self.archive}/%f && cp %p {self.archive}/%f'\n"
            "archive_timeout = 60s\n"
        )

    def init(self) -> None:
        self._checked(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(self.settings())
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")

    def start(self) -> None:
        self._checked(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "start"
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._as_owner("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam("postgres")
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, user.pw_uid, user.pw_gid)


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A directory the `postgres` user can use (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="kaizen-pitr-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _query(dsn: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


def _rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    return asyncio.run(_query(dsn, sql))


def _kaizen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(procs.BIN / "kaizen-studio"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _eventually_stored(dsn: str, ids: set[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored = {r["decision_id"] for r in _rows(dsn, "SELECT decision_id FROM decision_logs")}
        if ids <= stored:
            return
        time.sleep(0.2)
    pytest.fail(f"{len(ids - stored)} decision(s) never reached the database")


def test_base_backup_wal_archive_and_recovery_to_a_point_in_time(workspace: Path) -> None:
    archive = workspace / "archive"
    archive.mkdir()
    cluster = Cluster(workspace / "cluster", procs.free_port(), archive)
    cluster.root.mkdir()
    _give_to_postgres(workspace)
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    database = cluster.url("kaizen")
    dsn = cluster.dsn("kaizen")
    env = procs.clean_env(
        KAIZEN_DATABASE_URL=database,
        KAIZEN_MASTER_KEY=master_key,
        KAIZEN_HOME=str(workspace / "ops"),
    )
    control_plane = procs.ControlPlane.configured(
        workspace / "cp", database_url=database, master_key=master_key
    )
    sidecar = None
    recovered = None
    try:
        cluster.init()
        cluster.start()
        _rows(cluster.dsn(), "CREATE DATABASE kaizen")
        migrated = _kaizen("db", "upgrade", env=env)
        assert migrated.returncode == 0, migrated.stderr
        control_plane.start()

        cp = httpx.Client(base_url=control_plane.url, timeout=60)
        owner = cp.post(
            "/api/v1/auth/signup",
            json={"email": "pitr@example.com", "password": PASSWORD, "organization": "PITR"},
        ).json()
        admin = {"Authorization": f"Bearer {owner['access_token']}"}
        assert (
            cp.post("/api/v1/policies", json={"source": POLICY}, headers=admin).status_code == 201
        )

        def publish(message: str) -> None:
            done = cp.post("/api/v1/policies/publish", json={"message": message}, headers=admin)
            assert done.status_code == 201, done.text

        publish("before the base backup")
        gateway = cp.post(
            "/api/v1/gateways",
            json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
            headers=admin,
        ).json()
        http_port = procs.free_port()
        sidecar = procs.start_sidecar(
            workspace / "sidecar",
            procs.free_port(),
            http_port,
            KAIZEN_GATEWAY_TOKEN=gateway["credential"],
            KAIZEN_CONTROL_PLANE_URL=control_plane.url,
        )
        check_url = f"http://127.0.0.1:{http_port}/ext_authz/v1/agents/support-bot/invoke"

        def decisions(count: int) -> set[str]:
            made = set()
            for _ in range(count):
                answer = httpx.post(check_url, headers=admin, content=b"{}")
                assert answer.status_code == 200, answer.text
                made.add(answer.headers["x-kaizen-decision-id"])
            _eventually_stored(dsn, made)
            return made

        # 1. Data, then the base backup.
        first = decisions(10)
        base = workspace / "base-backup"
        taken = _kaizen("backup", "--base", str(base), env=env)
        assert taken.returncode == 0, taken.stderr
        assert "base backup of postgresql" in taken.stdout
        assert (base / "base" / "base.tar.gz").is_file()
        refused = _kaizen("restore", str(base), env=env)
        assert refused.returncode == 2
        assert "is a base backup" in refused.stderr

        # 2. More data, then the target time (the database's clock), then data after it.
        second = decisions(10)
        publish("before the target")
        target = _rows(dsn, "SELECT clock_timestamp()::text AS now")[0]["now"]
        expected_events = _rows(dsn, "SELECT count(*) AS n FROM audit_events")[0]["n"]
        time.sleep(0.05)  # the next commit's timestamp is after the target, not equal
        third = decisions(10)
        publish("after the target")
        # Every WAL segment up to here is in the archive (the drill must show recovery
        # *stopping* at the target, not running out of WAL).
        segment = _rows(dsn, "SELECT pg_walfile_name(pg_switch_wal()) AS name")[0]["name"]
        deadline = time.monotonic() + 60
        while not (archive / segment).exists():
            assert time.monotonic() < deadline, f"{segment} was never archived"
            time.sleep(0.1)
        procs.stop(sidecar)
        sidecar = None
        control_plane.stop()
        cp.close()

        # 3. Disaster: the cluster is gone.
        cluster.stop("immediate")
        shutil.rmtree(cluster.data)
        started = time.perf_counter()

        # 4. Recovery: unpack the base backup, replay archived WAL up to the target.
        recovered = Cluster(workspace / "cluster", cluster.port, archive)
        recovered.data.mkdir(mode=0o700)
        with tarfile.open(base / "base" / "base.tar.gz") as tar:
            tar.extractall(recovered.data, filter="fully_trusted")  # noqa: S202  (our own backup)
        with (recovered.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"restore_command = 'cp {archive}/%f %p'\n"
                f"recovery_target_time = '{target}'\n"
                "recovery_target_action = 'promote'\n"
            )
        (recovered.data / "recovery.signal").touch()
        _give_to_postgres(recovered.data)
        unpacked = time.perf_counter()
        recovered.start()
        deadline = time.monotonic() + 120
        while _rows(dsn, "SELECT pg_is_in_recovery() AS r")[0]["r"]:
            assert time.monotonic() < deadline, recovered.logs()
            time.sleep(0.1)
        promoted = time.perf_counter()
        verified = _kaizen("verify", env=env)
        rto = time.perf_counter() - started
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "every audit and decision chain is intact" in verified.stdout
        assert f"{expected_events} audit events, 20 decisions" in verified.stdout
        print(
            f"\nPITR drill: recovered to {target} and verified in {rto:.1f} s: unpacked in "
            f"{unpacked - started:.1f} s, WAL replayed and promoted in "
            f"{promoted - unpacked:.1f} s, every chain verified in "
            f"{time.perf_counter() - promoted:.1f} s"
        )
        assert "recovery stopping before commit" in recovered.logs()

        # Exactly the data before the target: its decisions and publishes, nothing after.
        stored = [r["decision_id"] for r in _rows(dsn, "SELECT decision_id FROM decision_logs")]
        assert sorted(stored) == sorted(first | second)
        assert not third & set(stored)
        messages = [r["message"] for r in _rows(dsn, "SELECT message FROM bundle_revisions")]
        assert "before the target" in messages
        assert "after the target" not in messages
    finally:
        if sidecar is not None:
            procs.stop(sidecar)
        if control_plane.process is not None:
            control_plane.stop()
        for running in (recovered, cluster):
            if running is not None:
                with contextlib.suppress(Exception):
                    running.stop("immediate")
