"""M13: two control-plane replicas behind one address, one SIGKILLed mid-traffic.

Every part is real: two `kaizen-studio control-plane` processes on one PostgreSQL database
and one Redis, a real Envoy in front of them (deploy/envoy/control-plane-balancer.yaml),
and `kaizen-studio sidecar` whose KAIZEN_CONTROL_PLANE_URL is that Envoy.

1. A publish on one replica reaches a sidecar long-polling the *other* replica by push:
   the announcement crosses Redis pub/sub (the test reads it off the channel) and the held
   long-poll is answered with the new revision before its wait ends.
2. While publishes (each with an `Idempotency-Key`), decisions at the sidecar and
   authenticated reads go on, the replica holding the sidecar's long-poll is SIGKILLed:
   no publish fails, every decision reaches the decision store exactly once (by id), and
   a publish on the surviving replica reaches the sidecar by long-poll push.
3. Sessions survive: an access token and a refresh token issued by the killed replica
   work on the survivor (signing keys in PostgreSQL, refresh tokens in Redis).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL
from tests.e2e import sidecar_procs as procs

BALANCER_TEMPLATE = procs.ROOT / "deploy" / "envoy" / "control-plane-balancer.yaml"
POLLS = 10  # held long-polls at once, round robin: five at each replica
LONG_POLL_WAIT_MS = 30_000  # the sidecar's `Prefer: wait=30` (policy/bundles/bundle_sync.py)
POLICY = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:ha@example.com", role: agent-user}
"""


class Balancer:
    """The Envoy in front of both replicas: its admin API and its JSON access log."""

    def __init__(self, directory: Path, a: procs.ControlPlane, b: procs.ControlPlane) -> None:
        self.port, self.admin = procs.free_port(), procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "balancer-access.log"
        config = procs.fill(
            BALANCER_TEMPLATE.read_text(),
            LISTEN_PORT=self.port,
            ADMIN_PORT=self.admin,
            REPLICA_A_PORT=a.port,
            REPLICA_B_PORT=b.port,
            ACCESS_LOG=self.log,
        )
        # The access log is read while traffic goes on: flushed every 100 ms, not 10 s.
        flush = ("--file-flush-interval-msec", "100")
        self.process = procs.start_envoy(config, directory, self.admin, *flush)

    def active(self) -> dict[int, int]:
        """Requests in flight to each replica, by its port."""
        clusters = httpx.get(f"http://127.0.0.1:{self.admin}/clusters?format=json").json()
        found: dict[int, int] = {}
        for cluster in clusters["cluster_statuses"]:
            if cluster["name"] != "control_plane":
                continue
            for host in cluster["host_statuses"]:
                port = int(host["address"]["socket_address"]["port_value"])
                stats = {s["name"]: int(s.get("value", 0)) for s in host["stats"]}
                found[port] = stats.get("rq_active", 0)
        return found

    def entries(self) -> list[dict[str, Any]]:
        # One line per finished request (flushed every 100 ms, see above).
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


class Channel:
    """Every message on the replicas' Redis bundle channel, read by a thread of our own."""

    def __init__(self, name: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._client = redis.Redis.from_url(REDIS_URL)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(**{name: self._handle})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.05, daemon=True)

    def _handle(self, message: dict[str, Any]) -> None:
        self.messages.append(json.loads(message["data"]))

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(5)
        self._pubsub.close()
        self._client.close()

    def revisions(self, scope: str) -> set[int]:
        return {int(m["revision"]) for m in self.messages if m.get("scope") == scope}


async def _stored_ids(database: str) -> list[str]:
    connection = await asyncpg.connect(database.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch("SELECT decision_id FROM decision_logs")
    finally:
        await connection.close()
    return [row["decision_id"] for row in rows]


async def _release_rows(database: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(database.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch("SELECT revision, message FROM bundle_revisions")
    finally:
        await connection.close()
    return [(row["revision"], row["message"]) for row in rows]


async def _release_messages(database: str) -> list[str]:
    return [message for _, message in await _release_rows(database)]


class Traffic:
    """Publishes through the balancer, decisions at the sidecar and authenticated reads
    through the balancer, each in its own thread, until stopped."""

    def __init__(self, balancer: str, check_url: str, headers: dict[str, str]) -> None:
        self.balancer, self.check_url, self.headers = balancer, check_url, headers
        self.publishes: list[tuple[str, int, Any]] = []  # (key, status, body)
        self.decisions: list[str] = []
        self.reads: list[int] = []
        self.failures: list[str] = []
        self.publishing_since: float | None = None  # when the publish in flight was sent
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guard(f), daemon=True)
            for f in (self._publish, self._decide, self._read)
        ]

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except Exception as error:  # a transport error is a failure the test reports
                self.failures.append(f"{loop.__name__}: {error!r}")

        return run

    def _publish(self) -> None:
        with httpx.Client(base_url=self.balancer, timeout=60) as client:
            while not self._stop.is_set():
                key = str(uuid.uuid4())
                self.publishing_since = time.monotonic()
                answer = client.post(
                    "/api/v1/policies/publish",
                    json={"message": f"failover {key}"},
                    headers={**self.headers, "Idempotency-Key": key},
                )
                body = (
                    answer.json()
                    if answer.headers.get("content-type", "").startswith("application/json")
                    else answer.text
                )
                self.publishing_since = None
                self.publishes.append((key, answer.status_code, body))

    def _decide(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                answer = client.post(self.check_url, headers=self.headers, content=b"{}")
                if answer.status_code != 200:
                    self.failures.append(f"decision: {answer.status_code} {answer.text[:200]}")
                    continue
                self.decisions.append(answer.headers["x-kaizen-decision-id"])
                time.sleep(0.01)

    def _read(self) -> None:
        with httpx.Client(base_url=self.balancer, timeout=30) as client:
            while not self._stop.is_set():
                self.reads.append(client.get("/api/v1/policies", headers=self.headers).status_code)
                time.sleep(0.02)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)


@pytest.fixture
def replicas(database: str, tmp_path: Path) -> Iterator[tuple[procs.ControlPlane, ...]]:
    """Two control planes on one database, one Redis prefix, one master key."""
    shared = {
        "database_url": database,
        "redis_url": REDIS_URL,
        "redis_prefix": f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        "master_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "rego_publishes_per_window": "10000",
    }
    a = procs.ControlPlane.configured(tmp_path / "cp-a", **shared)
    b = procs.ControlPlane.configured(tmp_path / "cp-b", **shared)
    try:
        a.start()
        b.start()  # migrations ran on A; B finds them done (advisory lock)
        yield a, b
    finally:
        for replica in (a, b):
            if replica.process is not None:
                replica.stop()


def _revision(sidecar_http: int) -> int | None:
    try:
        health = httpx.get(f"http://127.0.0.1:{sidecar_http}/healthz", timeout=2).json()
    except (httpx.TransportError, ValueError):
        return None
    revision = health.get("bundle_revision")
    return int(revision) if revision is not None else None


def _pushed(sidecar_http: int, revision: int) -> None:
    procs.eventually(lambda: _revision(sidecar_http) == revision, 30, f"revision {revision} pushed")


def _bundle_polls(balancer: Balancer) -> list[dict[str, Any]]:
    return [
        e
        for e in balancer.entries()
        if e["method"] == "GET" and "/bundle.tar.gz" in e["path"] and e["status"] == 200
    ]


def _delivered_by(balancer: Balancer, revision: int) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for entry in _bundle_polls(balancer):
            if str(entry["bundle_revision"]) == str(revision):
                return entry
        return None

    entry: dict[str, Any] = procs.eventually(
        found, 10, f"the long-poll answer of revision {revision}"
    )
    return entry


def _port(entry: dict[str, Any]) -> int:
    return int(str(entry["upstream"]).rsplit(":", 1)[1])


def _published_organisation(cp: httpx.Client) -> tuple[str, dict[str, str]]:
    """Sign up through the balancer and publish POLICY: the scope and the owner's header."""
    owner = cp.post(
        "/api/v1/auth/signup",
        json={"email": "ha@example.com", "password": PASSWORD, "organization": "HA"},
    )
    assert owner.status_code == 201, owner.text
    admin = {"Authorization": f"Bearer {owner.json()['access_token']}"}
    assert cp.post("/api/v1/policies", json={"source": POLICY}, headers=admin).status_code == 201
    first = cp.post("/api/v1/policies/publish", json={}, headers=admin)
    assert first.status_code == 201, first.text
    return str(owner.json()["organization_id"]), admin


def test_two_replicas_one_killed_mid_traffic(
    replicas: tuple[procs.ControlPlane, procs.ControlPlane],
    database: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    a, b = replicas
    by_port = {a.port: a, b.port: b}
    balancer = Balancer(tmp_path, a, b)
    request.addfinalizer(lambda: procs.stop(balancer.process))
    channel = Channel(f"{a.env['KAIZEN_REDIS_PREFIX']}bundles")
    request.addfinalizer(channel.close)

    cp = httpx.Client(base_url=balancer.url, timeout=60)
    request.addfinalizer(cp.close)
    scope, admin = _published_organisation(cp)
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    )
    assert gateway.status_code == 201, gateway.text
    revision = cp.get(f"/api/v1/bundles/{scope}/bundle.tar.gz", headers=admin)
    current = int(revision.headers["X-Kaizen-Bundle-Revision"])

    # A session from each replica, straight from it (not through the balancer).
    sessions = {}
    for replica in (a, b):
        login = httpx.post(
            f"{replica.url}/api/v1/auth/login",
            json={"email": "ha@example.com", "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
        sessions[replica.port] = login.json()

    grpc_port, http_port = procs.free_port(), procs.free_port()
    sidecar = procs.start_sidecar(
        tmp_path / "sidecar",
        grpc_port,
        http_port,
        KAIZEN_GATEWAY_TOKEN=gateway.json()["credential"],
        KAIZEN_CONTROL_PLANE_URL=balancer.url,
    )
    request.addfinalizer(lambda: procs.stop(sidecar))
    procs.eventually(lambda: _revision(http_port) == current, 30, "the sidecar's first bundle")

    # 1. Cross-replica push: publish straight on the replica that does NOT hold the
    # sidecar's long-poll; the held poll on the other one is woken through Redis.
    crossed = None
    for _ in range(4):
        holder = procs.eventually(
            lambda: [p for p, n in balancer.active().items() if n == 1] or None,
            10,
            "the sidecar's long-poll at one replica",
        )
        other = a if holder[0] == b.port else b
        published = httpx.post(
            f"{other.url}/api/v1/policies/publish", json={}, headers=admin, timeout=60
        )
        assert published.status_code == 201, published.text
        current = published.json()["revision"]
        _pushed(http_port, current)
        entry = _delivered_by(balancer, current)
        if _port(entry) != other.port:
            crossed = entry
            break
    assert crossed is not None, "no long-poll was ever held at the other replica"
    assert int(crossed["duration_ms"]) < LONG_POLL_WAIT_MS  # woken, not timed out
    assert procs.eventually(
        lambda: current in channel.revisions(scope), 10, "the Redis announcement"
    )

    # 2. Traffic, then SIGKILL the replica holding the sidecar's long-poll while it also
    # answers another request.
    check_url = f"http://127.0.0.1:{http_port}/ext_authz/v1/agents/support-bot/invoke"
    traffic = Traffic(balancer.url, check_url, admin)
    traffic.start()
    try:
        procs.eventually(lambda: len(traffic.publishes) >= 3, 60, "three publishes before the kill")

        def busy() -> list[int] | None:
            # A publish is in flight and a replica answers two requests at once (the
            # sidecar's long-poll beside the publish or a read). Looked for often: a
            # publish may take only tens of milliseconds.
            if traffic.publishing_since is None:
                return None
            return [p for p, n in balancer.active().items() if n >= 2] or None

        victim_port = procs.eventually(
            busy, 30, "a replica answering a publish and a long-poll", poll=0.01
        )[0]
        victim = by_port[victim_port]
        survivor = b if victim is a else a
        before = len(traffic.publishes)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        procs.eventually(
            lambda: len(traffic.publishes) >= before + 3, 90, "three publishes after the kill"
        )
    finally:
        traffic.stop()
    assert not traffic.failures, traffic.failures
    failed = [(key, status, body) for key, status, body in traffic.publishes if status != 201]
    assert not failed, failed
    assert set(traffic.reads) == {200}
    revisions = [body["revision"] for _, _, body in traffic.publishes]
    assert revisions == sorted(set(revisions)), "each publish is its own, increasing revision"
    # Each publish stored exactly once, even one the dead replica stored before it died and
    # the balancer sent again: its key found the first revision.
    messages = asyncio.run(_release_messages(database))
    for key, _, _ in traffic.publishes:
        assert messages.count(f"failover {key}") == 1, key
    assert {r for r, m in asyncio.run(_release_rows(database)) if m.startswith("failover ")} == set(
        revisions
    )

    # The balancer retried what the dead replica held; what it answered came from the survivor.
    retried = [e for e in balancer.entries() if int(e["attempts"] or 1) > 1]
    print(f"failover: {len(traffic.publishes)} publishes, {len(traffic.decisions)} decisions;")
    print(f"retried by the balancer: {[(e['method'], e['path'], e['status']) for e in retried]}")

    # A publish on the surviving replica (the only one left) reaches the sidecar by push.
    after = cp.post("/api/v1/policies/publish", json={}, headers=admin)
    assert after.status_code == 201, after.text
    current = after.json()["revision"]
    _pushed(http_port, current)
    entry = _delivered_by(balancer, current)
    assert _port(entry) == survivor.port
    assert int(entry["duration_ms"]) < LONG_POLL_WAIT_MS
    assert procs.eventually(
        lambda: current in channel.revisions(scope), 10, "its Redis announcement"
    )

    # 3. No lost decision, none twice: every id the sidecar answered is stored once.
    made = set(traffic.decisions)
    assert len(made) == len(traffic.decisions) > 0

    def all_stored() -> list[str] | None:
        stored = asyncio.run(_stored_ids(database))
        return stored if made <= set(stored) else None

    stored = procs.eventually(all_stored, 60, "every decision in the decision store")
    assert len(stored) == len(set(stored)) == len(made)
    verify = cp.get("/api/v1/decisions/verify", headers=admin)
    assert verify.status_code == 200, verify.text
    assert verify.json()["ok"] is True
    assert verify.json()["checked"] == len(made)

    # 4. The killed replica's session works on the survivor: access and refresh token.
    killed = sessions[victim.port]
    token = {"Authorization": f"Bearer {killed['access_token']}"}
    for _ in range(2):
        assert cp.get("/api/v1/policies", headers=token).status_code == 200
    refreshed = cp.post("/api/v1/auth/refresh", json={"refresh_token": killed["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    fresh = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert cp.get("/api/v1/policies", headers=fresh).status_code == 200
    reused = cp.post("/api/v1/auth/refresh", json={"refresh_token": killed["refresh_token"]})
    assert reused.status_code == 401  # still single-use across replicas


def test_every_request_a_dying_replica_held_is_retried_on_the_other(
    replicas: tuple[procs.ControlPlane, procs.ControlPlane],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """More requests in flight at the replica that dies than Envoy's default of three
    parallel retries per cluster: each one is answered by the survivor, none with the
    balancer's own 503 (its access log flags that `UO`, retry overflow)."""
    a, b = replicas
    by_port = {a.port: a, b.port: b}
    balancer = Balancer(tmp_path, a, b)
    request.addfinalizer(lambda: procs.stop(balancer.process))
    cp = httpx.Client(base_url=balancer.url, timeout=60)
    request.addfinalizer(cp.close)
    scope, admin = _published_organisation(cp)
    url = f"{balancer.url}/api/v1/bundles/{scope}/bundle.tar.gz"
    etag = cp.get(url, headers=admin).headers["ETag"]
    held = {**admin, "If-None-Match": etag, "Prefer": "wait=5"}

    with ThreadPoolExecutor(POLLS) as pool:
        polls = [pool.submit(httpx.get, url, headers=held, timeout=60) for _ in range(POLLS)]
        holding = procs.eventually(
            lambda: [p for p, n in balancer.active().items() if n >= 4] or None,
            10,
            "four long-polls held at one replica",
        )
        victim = by_port[holding[0]]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        statuses = [poll.result().status_code for poll in polls]

    assert statuses == [304] * POLLS, statuses
    overflowed = [e for e in balancer.entries() if "UO" in str(e["flags"])]
    assert not overflowed, overflowed
