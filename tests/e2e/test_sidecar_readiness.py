"""Readiness of a several-worker sidecar: once `/healthz` says ready, no check may land on a
worker that still has no verified bundle (authz_sidecar/README.md, "Process model and
modes").

The attack is the start-up race: two workers share the ports (SO_REUSEPORT), and a control
plane hands the bundle to the first worker that asks while it holds back every other
worker's request. A probe that reached the first worker says ready; if its sibling already
listened, a client's check on it got the fail-closed deny "no verified policy bundle loaded".
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import ORG, access_token, make_bundle, make_keys

REDIS_URL = os.environ.get("KAIZEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
GATEWAY_TOKEN = "kgw_sidecar_readiness_credential"
NO_BUNDLE = "no verified policy bundle loaded"
CHECKS = 200
# If the herald (worker 0) is the one held back, the sidecar rightly stays not ready: the
# held requests are then let through after this long (not an assertion, a way out).
HELD_HERALD_SECONDS = 3.0


class SlowBundleSource:
    """A stand-in control plane. It answers the first bundle request once a second one has
    come (so both workers start with an empty disk), and holds every other first request
    until `release()`; a long-poll with the revision known answers 304 after a while.
    Status reports and decision logs are taken and dropped."""

    def __init__(self, bundle: bytes) -> None:
        self.bundle = bundle
        self.released = threading.Event()
        self.closing = threading.Event()
        self._asked = threading.Condition()
        self.asked = 0  # first bundle requests (one per worker)
        self.all_asked: float | None = None  # when the second worker asked
        self.held = 0
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/api/v1/gateways/self":
                    self._send(200, json.dumps({"id": "gw", "name": "gw", "bundle_scope": ORG}))
                elif self.path == f"/api/v1/bundles/{ORG}/bundle.tar.gz":
                    source.bundle_request(self)
                else:
                    self._send(404, json.dumps({"detail": "not here"}))

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self._send(200, "{}")

            def _send(self, status: int, body: str | bytes, **headers: str) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a worker stopped mid-long-poll
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def bundle_request(self, handler: Any) -> None:
        if handler.headers.get("If-None-Match"):  # a long-poll: nothing new
            self.closing.wait(2.0)
            handler._send(304, b"")
            return
        with self._asked:
            self.asked += 1
            first = self.asked == 1
            if first:
                self._asked.wait_for(lambda: self.asked >= 2, timeout=120)
            else:
                self.held += 1
                self.all_asked = self.all_asked or time.monotonic()
                self._asked.notify_all()
        if not first:
            self.released.wait(120)
            with self._asked:
                self.held -= 1
        handler._send(200, self.bundle, etag='"1"', **{"content-type": "application/gzip"})

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> SlowBundleSource:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.closing.set()
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _health(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code
    except httpx.TransportError:
        return None  # no worker listens yet


def test_no_worker_denies_for_want_of_a_bundle_once_healthz_says_ready(tmp_path: Path) -> None:
    keys = make_keys()
    jwks = tmp_path / "jwks.json"  # pinned: the stand-in serves no keys
    jwks.write_text(json.dumps(keys.jwks))
    grpc_port, http_port = procs.free_port(), procs.free_port()
    url = f"http://127.0.0.1:{http_port}"
    with SlowBundleSource(make_bundle(keys)) as source:
        sidecar = procs.start_sidecar(
            tmp_path / "home",  # empty: no last-known-good bundle on disk
            grpc_port,
            http_port,
            wait=False,
            KAIZEN_SIDECAR_WORKERS="2",
            KAIZEN_REDIS_URL=REDIS_URL,
            KAIZEN_REDIS_PREFIX=f"kaizen-test-{secrets.token_hex(4)}:",
            KAIZEN_GATEWAY_TOKEN=GATEWAY_TOKEN,
            KAIZEN_CONTROL_PLANE_URL=source.url,
            KAIZEN_SCOPE=ORG,
            KAIZEN_SIDECAR_JWKS=str(jwks),
        )
        with procs.running(sidecar):

            def both_asked() -> bool:
                assert sidecar.poll() is None, procs.output(sidecar)
                return source.asked >= 2

            # Both workers are up and syncing: one holds the bundle, the other is held back.
            procs.eventually(both_asked, 60, "both workers asking for the bundle")

            def ready() -> bool:
                assert sidecar.poll() is None, procs.output(sidecar)
                asked = source.all_asked
                if asked is not None and time.monotonic() - asked > HELD_HERALD_SECONDS:
                    source.release()
                return _health(url) == 200

            procs.eventually(ready, 60, "/healthz answering 200", poll=0.02)
            held = source.held  # normally 1: the sibling still waits for its bundle
            headers = {
                "Authorization": f"Bearer {access_token(keys)}",
                "X-Original-Method": "POST",
                "X-Original-URI": "/v1/agents/a/invoke",
            }
            answers = []
            for _ in range(CHECKS):  # a new connection each time: the kernel picks a worker
                response = httpx.get(f"{url}/authz", headers=headers, timeout=5)
                reasons = response.json().get("reasons") if response.status_code != 200 else None
                answers.append((response.status_code, reasons))
            refused = [a for a in answers if a[1] and NO_BUNDLE in a[1]]
            assert not refused, (
                f"{len(refused)} of {CHECKS} checks after /healthz said ready were denied "
                f"for want of a bundle (bundle requests held back then: {held})"
            )
            assert {status for status, _ in answers} == {200}, answers[:5]

            # Let the sibling have its bundle: it joins the ports, both workers answer.
            source.release()
            instances: set[str] = set()

            def both_workers_answer() -> bool:
                status = httpx.get(
                    f"{url}/status", headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
                )
                instances.add(status.json()["instance"])
                return len(instances) == 2

            procs.eventually(both_workers_answer, 60, "both workers answering", poll=0.01)
            assert procs.stop(sidecar) == 0


def test_a_worker_waiting_for_its_bundle_says_so_and_stops_on_sigterm(tmp_path: Path) -> None:
    """No control plane answers: worker 0 answers 503 and denies, worker 1 never listens
    (it logs why), and SIGTERM still stops the whole sidecar cleanly."""
    grpc_port, http_port = procs.free_port(), procs.free_port()
    url = f"http://127.0.0.1:{http_port}"
    sidecar = procs.start_sidecar(
        tmp_path / "home",
        grpc_port,
        http_port,
        wait=False,
        KAIZEN_SIDECAR_WORKERS="2",
        KAIZEN_REDIS_URL=REDIS_URL,
        KAIZEN_REDIS_PREFIX=f"kaizen-test-{secrets.token_hex(4)}:",
        KAIZEN_GATEWAY_TOKEN="kgw_nobody_listens",
        KAIZEN_CONTROL_PLANE_URL=f"http://127.0.0.1:{procs.free_port()}",
        KAIZEN_LOG_LEVEL="INFO",
    )
    with procs.running(sidecar):
        waiting = "sidecar worker 1 waits for a verified policy bundle before it listens"
        procs.eventually(
            lambda: waiting in procs.full_output(sidecar), 60, "worker 1 saying it waits"
        )
        procs.eventually(lambda: _health(url) == 503, 60, "/healthz answering 503")
        for _ in range(20):  # whichever worker a fresh connection reaches: not ready, deny
            assert _health(url) == 503
            denied = httpx.post(f"{url}/authz", headers={"X-Original-URI": "/v1/agents/a"})
            assert denied.status_code == 403
            assert denied.json()["reasons"] == [NO_BUNDLE]
        assert "sidecar worker 1 listening" not in procs.full_output(sidecar)
        assert "sidecar worker 0 listening" in procs.full_output(sidecar)
        # Exit 0 within procs.stop's 10 s (else it kills): the waiting worker stopped too.
        assert procs.stop(sidecar) == 0
