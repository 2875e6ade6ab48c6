"""The sidecar's control-plane-facing parts over real HTTP: bundle sync, log shipping, status.

The server here is a STAND-IN for our control plane's endpoints while those land: a small
Starlette app, run by uvicorn on a free port, implementing exactly the protocol of
docs/runtime-protocols.md (`/api/v1/gateways/self`, `/api/v1/bundles/{scope}/jwks.json`,
the bundle with ETag,
long-poll, 304 and 404, idempotent decision ingest, status). Bundles are built and signed
with `policy.bundles.bundle.build_bundle`. The real control plane is exercised in the end-to-end
tests; this module checks the sidecar side of the protocol, including a control plane that
goes away, a refused credential, a tampered bundle and a `kill -9` in the middle of writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authz_sidecar.decision_log import DecisionBuffer  # noqa: TID251
from authz_sidecar.status_report import StatusReporter  # noqa: TID251
from policy.bundles.bundle import build_bundle
from policy.bundles.bundle_store import BundleStore
from policy.bundles.bundle_sync import Backoff, BundleSync
from policy.bundles.keys import endorse, generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, CompiledPolicy, compile_policy
from policy.documents.policy_set import PolicySet

ORG = "org-5e1d"
TOKEN = "kgw_test-gateway-credential-0123456789"
REPO = Path(__file__).resolve().parents[2]


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class ControlPlaneStandIn:
    """The control plane's sidecar-facing endpoints (docs/runtime-protocols.md), in memory."""

    def __init__(self, scope: str = ORG, token: str = TOKEN) -> None:
        self.scope = scope
        self.token = token
        pem, self.jwks = generate_ed25519("cp-1")
        self.key: Any = load_private_key(pem)
        self.kid = "cp-1"
        self.compiled: CompiledPolicy = compile_policy(
            PolicySet.from_documents([]), CompileContext(scope)
        )
        self.bundle: bytes | None = None
        self.revision: int | None = None
        self._published = asyncio.Event()
        self.decisions: dict[str, dict[str, Any]] = {}
        self.accepted = 0
        self.duplicates = 0
        self.fail_after_storing = 0  # store a batch, then answer 500 (the ack is lost)
        self.statuses: list[dict[str, Any]] = []
        self.requests: dict[str, int] = {}
        self.app = Starlette(
            routes=[
                Route("/api/v1/gateways/self", self.gateway_self),
                Route("/.well-known/jwks.json", self.well_known_jwks),
                Route("/api/v1/bundles/{scope}/jwks.json", self.scope_jwks),
                Route("/api/v1/bundles/{scope}/bundle.tar.gz", self.get_bundle),
                Route("/api/v1/decisions/ingest", self.ingest, methods=["POST"]),
                Route("/api/v1/gateways/self/status", self.status, methods=["POST"]),
            ]
        )

    # -- publishing, as the control plane's publish would --------------------------------------

    def sign(self, revision: int) -> bytes:
        return build_bundle(
            self.compiled, revision=revision, signing_key=self.key, kid=self.kid, scope=self.scope
        )

    def publish(self, revision: int, bundle: bytes | None = None) -> None:
        self.bundle = bundle if bundle is not None else self.sign(revision)
        self.revision = revision
        self._published.set()  # wakes every waiting long-poll
        self._published = asyncio.Event()

    def wake_all(self) -> None:
        self._published.set()
        self._published = asyncio.Event()

    def rotate_key(self) -> None:
        """As the control plane rotates an organisation's key: the old key endorses the new."""
        pem, new = generate_ed25519("cp-2")
        endorsement = endorse(self.key, self.kid, new["keys"][0], scope=self.scope, iat=0)
        self.key, self.kid = load_private_key(pem), "cp-2"
        self.jwks = {"keys": [*self.jwks["keys"], *new["keys"]], "endorsements": [endorsement]}

    # -- endpoints ------------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.requests[name] = self.requests.get(name, 0) + 1

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    async def gateway_self(self, request: Request) -> Response:
        self._count("self")
        if not self._authorized(request):
            return error(401, "unauthenticated", "bad gateway credential")
        return JSONResponse(
            {
                "id": "gw-1",
                "organization_id": self.scope,
                "name": "edge",
                "environment": "test",
                "url": "http://127.0.0.1:8080",
                "bundle_scope": self.scope,
            }
        )

    async def well_known_jwks(self, request: Request) -> Response:
        self._count("jwks")
        return JSONResponse(self.jwks)

    async def scope_jwks(self, request: Request) -> Response:
        """The organisation's bundle keys: what a sidecar of this scope fetches."""
        self._count("jwks")
        if request.path_params["scope"] != self.scope:
            return error(404, "not_found", "no such bundle scope")
        return JSONResponse(self.jwks)

    async def get_bundle(self, request: Request) -> Response:
        self._count("bundle")
        if not self._authorized(request):
            return error(401, "unauthenticated", "bad gateway credential")
        if request.path_params["scope"] != self.scope:
            return error(404, "not_found", "no such bundle")
        wait = 0
        for part in request.headers.get("prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name == "wait" and value.isdigit():
                wait = min(int(value), 60)
        if self.revision is not None and request.headers.get("if-none-match") == self._etag():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), wait)
            if request.headers.get("if-none-match") == self._etag():
                return Response(status_code=304, headers={"ETag": self._etag()})
        if self.bundle is None:
            return error(404, "not_found", "nothing published yet")
        return Response(
            self.bundle,
            media_type="application/gzip",
            headers={"ETag": self._etag(), "X-Kaizen-Bundle-Revision": str(self.revision)},
        )

    def _etag(self) -> str:
        return f'"{self.revision}"'

    async def ingest(self, request: Request) -> Response:
        self._count("ingest")
        if not self._authorized(request):
            return error(401, "unauthenticated", "bad gateway credential")
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":  # as the sidecar sends them
            body = gzip.decompress(body)
        decisions = json.loads(body)["decisions"]
        if len(decisions) > 1000:
            return error(422, "invalid", "at most 1,000 records per request")
        accepted = duplicates = 0
        for decision in decisions:
            if decision["decision_id"] in self.decisions:
                duplicates += 1
            else:
                self.decisions[decision["decision_id"]] = decision
                accepted += 1
        self.accepted += accepted
        self.duplicates += duplicates
        if self.fail_after_storing:
            self.fail_after_storing -= 1
            return error(500, "internal", "stored, but the answer is lost")
        return JSONResponse({"accepted": accepted, "duplicates": duplicates})

    async def status(self, request: Request) -> Response:
        self._count("status")
        if not self._authorized(request):
            return error(401, "unauthenticated", "bad gateway credential")
        self.statuses.append(json.loads(await request.body()))
        return Response(status_code=204)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Running:
    """The stand-in served by uvicorn on a fixed port; `stop()` and `start()` again."""

    def __init__(self, standin: ControlPlaneStandIn) -> None:
        self.standin = standin
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(
            self.standin.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    @property
    def serving(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        assert self._server is not None
        assert self._task is not None
        self._server.should_exit = True
        self.standin.wake_all()  # parked long-polls answer 304 instead of being cut off
        await self._task


@pytest.fixture
async def control_plane() -> AsyncIterator[Running]:
    running = Running(ControlPlaneStandIn())
    await running.start()
    try:
        yield running
    finally:
        if running.serving:
            await running.stop()


async def until(condition: Callable[[], bool], within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110  (polling counters is what a test can do)
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def background(coroutine: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(coroutine)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def fast_sync(store: BundleStore, url: str, token: str = TOKEN, wait: int = 60) -> BundleSync:
    sync = BundleSync(store, url, token, wait_seconds=wait, backoff=Backoff(0.05, 0.2))
    sync.not_found_delay = 0.1
    return sync


def record(n: int) -> dict[str, Any]:
    return {
        "decision_id": f"d-{n:07d}",
        "time": "2026-11-26T12:00:00Z",
        "input": {"action": "invoke", "resource": {"id": f"agent:bot-{n % 7}"}},
        "result": {"outcome": "allow", "reasons": []},
        "duration_us": 40,
        "instance": "test/1",
    }


# -- bundle sync ---------------------------------------------------------------------------------


async def test_first_sync_discovers_scope_fetches_keys_and_persists(
    control_plane: Running, tmp_path: Path
) -> None:
    control_plane.standin.publish(1)
    store = BundleStore(tmp_path)
    sync = fast_sync(store, control_plane.url)
    async with background(sync.run()):
        await until(lambda: store.revision == 1)
        # Enforced first, then written as last-known-good: a restart needs no control plane.
        await until(lambda: BundleStore(tmp_path, scope=ORG).load_last_known_good() is not None)
    assert store.scope == ORG
    assert store.jwks == control_plane.standin.jwks
    assert sync.last_sync is not None
    assert sync.gateway is not None
    assert sync.gateway["id"] == "gw-1"


async def test_waits_while_nothing_is_published_then_installs(
    control_plane: Running, tmp_path: Path
) -> None:
    store = BundleStore(tmp_path, scope=ORG)
    sync = fast_sync(store, control_plane.url)
    async with background(sync.run()):
        await until(lambda: control_plane.standin.requests.get("bundle", 0) >= 2)
        assert store.current is None
        assert sync.last_sync is not None  # a 404 is a contact, not a failure
        assert sync.failures == 0
        control_plane.standin.publish(1)
        await until(lambda: store.revision == 1)


async def test_a_configured_scope_that_is_not_this_gateways_is_named(
    control_plane: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    control_plane.standin.publish(1)
    store = BundleStore(tmp_path, scope="org-someone-else")
    sync = fast_sync(store, control_plane.url)
    with caplog.at_level(logging.ERROR, logger="policy.bundles.bundle_sync"):
        async with background(sync.run()):
            await until(lambda: sync.failures >= 1)
    assert store.current is None
    # Refused at discovery: the control plane's answer contradicts the configured scope.
    assert "names bundle scope 'org-5e1d', but this runtime is bound to scope" in caplog.text
    assert "'org-someone-else'" in caplog.text


async def test_long_poll_wakes_on_a_new_revision(control_plane: Running, tmp_path: Path) -> None:
    control_plane.standin.publish(1)
    store = BundleStore(tmp_path, scope=ORG)
    sync = fast_sync(store, control_plane.url, wait=60)
    async with background(sync.run()):
        await until(lambda: store.revision == 1)
        await asyncio.sleep(0.3)  # the sidecar is now parked in a 60 s long-poll
        assert control_plane.standin.requests["bundle"] == 2
        started = time.monotonic()
        control_plane.standin.publish(2)
        # Far inside the 60 s wait: only the push path can deliver it this soon.
        await until(lambda: store.revision == 2, within=10)
    print(f"propagation after publish: {(time.monotonic() - started) * 1000:.1f} ms")


async def test_tampered_bundle_is_refused_while_the_old_one_keeps_serving(
    control_plane: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    standin = control_plane.standin
    standin.publish(1)
    store = BundleStore(tmp_path, scope=ORG)
    sync = fast_sync(store, control_plane.url)
    good = None
    async with background(sync.run()):
        await until(lambda: store.revision == 1)
        good = store.current
        rogue_pem, _ = generate_ed25519(standin.kid)  # same kid, a key we never published
        tampered = build_bundle(
            standin.compiled,
            revision=2,
            signing_key=load_private_key(rogue_pem),
            kid=standin.kid,
            scope=ORG,
        )
        with caplog.at_level(logging.ERROR, logger="policy.bundles.bundle_sync"):
            standin.publish(2, tampered)
            await until(lambda: sync.refused == 1)
            await asyncio.sleep(0.5)
        assert store.current is good  # still serving revision 1
        assert sync.last_refusal is not None  # reported in the status heartbeat
        assert "refused bundle" in caplog.text
        assert "still serving revision 1" in caplog.text
        # The refused revision is named in If-None-Match: no hammering, one poll parked.
        assert standin.requests["bundle"] <= 4
        standin.publish(3)
        await until(lambda: store.revision == 3)
    assert sync.refused == 1


async def test_rotated_signing_key_is_fetched_once_then_trusted(
    control_plane: Running, tmp_path: Path
) -> None:
    standin = control_plane.standin
    standin.publish(1)
    store = BundleStore(tmp_path, scope=ORG)
    sync = fast_sync(store, control_plane.url)
    async with background(sync.run()):
        await until(lambda: store.revision == 1)
        assert standin.requests["jwks"] == 1
        standin.rotate_key()
        standin.publish(2)
        await until(lambda: store.revision == 2)
    assert standin.requests["jwks"] == 2
    assert store.current is not None
    assert store.current.key_id == "cp-2"
    assert sync.refused == 0


async def test_refused_credential_backs_off_with_an_actionable_error(
    control_plane: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    control_plane.standin.publish(1)
    store = BundleStore(tmp_path)
    sync = fast_sync(store, control_plane.url, token="kgw_revoked-secret")
    with caplog.at_level(logging.ERROR, logger="policy.bundles.bundle_sync"):
        async with background(sync.run()):
            await until(lambda: sync.failures >= 3)
    assert store.current is None
    assert "gateway credential refused" in (sync.last_error or "")
    assert "KAIZEN_GATEWAY_TOKEN" in caplog.text
    assert "kgw_revoked-secret" not in caplog.text
    assert "kgw_revoked-secret" not in repr(sync)
    assert sync.backoff.attempt >= 3  # backing off, not hammering


async def test_control_plane_down_keeps_serving_then_catches_up(
    control_plane: Running, tmp_path: Path
) -> None:
    control_plane.standin.publish(1)
    store = BundleStore(tmp_path, scope=ORG)
    sync = fast_sync(store, control_plane.url)
    async with background(sync.run()):
        await until(lambda: store.revision == 1)
        await control_plane.stop()
        await until(lambda: sync.failures >= 2)
        assert store.revision == 1
        assert "unreachable" in (sync.last_error or "")
        control_plane.standin.publish(2)
        await control_plane.start()
        await until(lambda: store.revision == 2)
        assert sync.last_error is None


WRITER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from policy.bundles.bundle_store import BundleStore
    from policy.bundles.bundle import build_bundle
    from policy.compile.compiler import CompileContext, compile_policy
    from policy.bundles.keys import load_private_key
    from policy.documents.policy_set import PolicySet

    directory, scope, pem, jwks, first = sys.argv[1:6]
    key = load_private_key(Path(pem).read_bytes())
    jwks = json.loads(Path(jwks).read_text())
    compiled = compile_policy(PolicySet.from_documents([]), CompileContext(scope))
    store = BundleStore(Path(directory), scope=scope)
    for revision in range(int(first), 201, 2):
        store.install(build_bundle(compiled, revision=revision, signing_key=key, kid="cp-1",
                                   scope=scope), jwks)
    """
)


async def test_workers_sharing_a_bundle_directory_never_see_a_torn_or_older_file(
    tmp_path: Path,
) -> None:
    pem, jwks = generate_ed25519("cp-1")
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    directory = tmp_path / "bundles"
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            *(str(directory), ORG, str(tmp_path / "key.pem"), str(tmp_path / "jwks.json")),
            first,
            cwd=REPO,
        )
        for first in ("1", "2")
    ]
    seen: list[int] = []
    while any(writer.returncode is None for writer in writers):
        if (directory / "last-known-good.json").exists():
            loaded = BundleStore(directory, scope=ORG, pinned_jwks=jwks).load_last_known_good()
            assert loaded is not None, "a worker read a torn or unverifiable file"
            seen.append(loaded.revision_number)
        await asyncio.sleep(0.005)
        for writer in writers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.wait(), 0.001)
    assert [writer.returncode for writer in writers] == [0, 0]
    assert len(seen) > 5, "the readers never overlapped the writers"
    assert seen == sorted(seen)  # the file only ever moves forward
    final = BundleStore(directory, scope=ORG, pinned_jwks=jwks).load_last_known_good()
    assert final is not None
    assert final.revision == "200"


# -- decision logs ------------------------------------------------------------------------------


async def test_logs_survive_an_outage_with_zero_loss_and_zero_double_counting(
    control_plane: Running, tmp_path: Path
) -> None:
    standin = control_plane.standin
    log = DecisionBuffer(tmp_path / "worker-0", segment_bytes=64 * 1024)
    ship = log.ship_forever(control_plane.url, TOKEN, batch=200, backoff=Backoff(0.05, 0.3))
    async with background(ship):
        for n in range(1_000):
            await log.append(record(n))
        await until(lambda: log.backlog == 0)
        await control_plane.stop()
        for n in range(1_000, 3_000):
            await log.append(record(n))
        await until(lambda: log.failures >= 2)
        assert log.backlog == 2_000
        standin.fail_after_storing = 2  # the first answers after the outage are lost
        await control_plane.start()
        await until(lambda: log.backlog == 0)
    await log.close()
    assert sorted(standin.decisions) == [f"d-{n:07d}" for n in range(3_000)]
    assert standin.accepted == 3_000  # every record accepted exactly once
    # The resent batches were recognised as duplicates: at least the first one whose answer
    # was lost (how many more depends on which of two batches in flight the second 500 hit).
    assert standin.duplicates >= 200
    assert list(standin.decisions)[:3] == ["d-0000000", "d-0000001", "d-0000002"]
    assert log.shipped == 3_000


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from authz_sidecar.decision_log import DecisionBuffer

    async def main():
        log = DecisionBuffer(Path(sys.argv[1]), segment_bytes=32 * 1024)
        n = 0
        while True:
            await log.append({"decision_id": f"d-{n:07d}", "time": "2026-11-26T12:00:00Z",
                              "input": {"action": "invoke", "pad": "x" * (n % 300)},
                              "result": {"outcome": "allow"}, "duration_us": 1,
                              "instance": "child"})
            if n % 100 == 0:
                print(n, flush=True)
            n += 1

    asyncio.run(main())
    """
)


async def test_kill_9_mid_append_loses_nothing_appended(
    control_plane: Running, tmp_path: Path
) -> None:
    directory = tmp_path / "worker-0"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(directory), cwd=REPO, stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    reported = -1
    try:
        while reported < 20_000:
            line = await child.stdout.readline()
            assert line, "the child process died on its own"
            reported = int(line)
    finally:
        child.send_signal(signal.SIGKILL)  # mid-append, with no chance to flush or close
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    log = DecisionBuffer(directory)  # the worker's replacement
    appended = log.backlog
    assert appended > reported  # everything reported appended is there
    async with background(log.ship_forever(control_plane.url, TOKEN)):
        await until(lambda: log.backlog == 0, within=60)
    await log.close()
    ids = list(control_plane.standin.decisions)
    assert ids == [f"d-{n:07d}" for n in range(appended)]  # complete, in order, no garbage
    assert control_plane.standin.accepted == appended


# -- status ---------------------------------------------------------------------------------------


async def test_status_reports_reach_the_control_plane_and_failures_do_not_raise(
    control_plane: Running, caplog: pytest.LogCaptureFixture
) -> None:
    body = {
        "instance": "host/123",
        "bundle_revision": 4,
        "key_id": "cp-1",
        "last_sync": "2026-11-26T12:00:00Z",
        "decisions": {"allow": 10, "deny": 2},
        "log_backlog": 0,
        "started_at": "2026-11-26T11:00:00Z",
    }
    reporter = StatusReporter(control_plane.url, TOKEN, lambda: body, interval=0.05)
    async with background(reporter.run()):
        await until(lambda: len(control_plane.standin.statuses) >= 2)
        await control_plane.stop()
        with caplog.at_level(logging.WARNING, logger="authz_sidecar.status_report"):
            await until(lambda: reporter.failures >= 3)
    assert control_plane.standin.statuses[0] == body
    assert caplog.text.count("status report to") == 1  # once per outage, not per attempt
    async with httpx.AsyncClient() as client:
        refused = StatusReporter(control_plane.url, "kgw_wrong", lambda: body)
        await control_plane.start()
        assert await refused.report_once(client) is False
    assert "gateway credential refused" in (refused.last_error or "")
