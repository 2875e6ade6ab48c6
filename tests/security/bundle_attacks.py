"""The attacker's side of the bundle attacks: a man in the middle on the sync path, tenants
on a real control plane, and hand-made hostile archives.

`Interceptor` stands between a sidecar or gateway and the real control-plane process (as
anyone on a plain-http network path, or a tenant who controls a proxy, can): it forwards
every request unchanged unless told to answer a bundle download with bytes of its choice,
to claim another scope in `GET /api/v1/gateways/self`, or to present another gateway's
credential. Everything it does not replace is the control plane's own answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import io
import json
import resource
import secrets
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.db.models import SigningKey
from control_plane.db.session import SYSTEM, Database
from control_plane.services.crypto import unseal
from policy.bundles.bundle import build_bundle
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from tests.conftest import PASSWORD
from tests.e2e import sidecar_procs as procs

GIB = 1024**3
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}

ROLES = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:%(email)s", role: agent-user}
"""


@dataclass
class Tenant:
    """An organisation on the real control plane: its owner and one gateway."""

    organization_id: str
    email: str
    headers: dict[str, str]
    gateway_id: str
    credential: str

    def publish(self, cp: httpx.Client, note: str) -> int:
        source = ROLES % {"email": self.email} + f"# {note}\n"
        created = cp.post("/api/v1/policies", json={"source": source}, headers=self.headers)
        assert created.status_code == 201, created.text
        published = cp.post("/api/v1/policies/publish", json={}, headers=self.headers)
        assert published.status_code == 201, published.text
        return int(published.json()["revision"])

    def bundle(self, cp: httpx.Client) -> bytes:
        """The current signed bundle, downloaded as the gateway would."""
        response = cp.get(
            f"/api/v1/bundles/{self.organization_id}/bundle.tar.gz",
            headers={"Authorization": f"Bearer {self.credential}"},
        )
        assert response.status_code == 200, response.text
        return response.content


def tenant(cp: httpx.Client, name: str) -> Tenant:
    """Signs up organisation `name` (its owner's email no other test's: the control plane
    may be the suite's shared one) and registers its gateway."""
    email = f"owner-{secrets.token_hex(3)}@{name.lower()}.example.com"
    owner = cp.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "organization": name}
    )
    assert owner.status_code == 201, owner.text
    headers = {"Authorization": f"Bearer {owner.json()['access_token']}"}
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=headers,
    )
    assert gateway.status_code == 201, gateway.text
    return Tenant(
        owner.json()["organization_id"],
        email,
        headers,
        gateway.json()["id"],
        gateway.json()["credential"],
    )


@dataclass
class Interceptor:
    """A forwarding front for the control plane that can replace chosen answers."""

    upstream: str
    bundle: bytes | None = None  # served for every bundle download instead of the real one
    bundle_etag: str = '"999"'
    claim_scope: str | None = None  # rewrites bundle_scope in GET /api/v1/gateways/self
    jwks: dict[str, Any] | None = None  # served for every JWKS request instead of the real one
    credential: str | None = None  # presented upstream instead of the caller's
    served: int = 0  # replaced bundles handed out
    first_served: int | None = None  # index in `requests` of the first replaced answer
    requests: list[str] = field(default_factory=list)
    port: int = field(default_factory=procs.free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: Request) -> Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if self.bundle is not None and path.endswith("/bundle.tar.gz"):
            return await self._replaced_bundle(request)
        if self.jwks is not None and path.endswith("jwks.json"):
            return Response(
                httpx.Response(200, json=self.jwks).content, 200, media_type="application/json"
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", *_HOP}}
        if self.credential is not None:
            headers["authorization"] = f"Bearer {self.credential}"
        if "prefer" in headers:
            # Short long-polls: nothing is in flight for long when the interceptor stops.
            headers["prefer"] = "wait=1"
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=90.0)) as client:
            answer = await client.request(
                request.method,
                f"{self.upstream}{path}",
                params=request.query_params,
                headers=headers,
                content=await request.body(),
            )
        body = answer.content
        if self.claim_scope is not None and path == "/api/v1/gateways/self" and answer.is_success:
            document = answer.json()
            document["bundle_scope"] = document["organization_id"] = self.claim_scope
            body = httpx.Response(200, json=document).content
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
        return Response(body, status_code=answer.status_code, headers=kept)

    async def _replaced_bundle(self, request: Request) -> Response:
        if request.headers.get("if-none-match") == self.bundle_etag:
            # The runtime refused it and asks for something newer: hold it like a long-poll.
            await asyncio.sleep(1)
            return Response(status_code=304, headers={"ETag": self.bundle_etag})
        self.served += 1
        if self.first_served is None:
            self.first_served = len(self.requests) - 1
        return Response(
            self.bundle, media_type="application/gzip", headers={"ETag": self.bundle_etag}
        )

    def polled_after_serving(self) -> bool:
        """The runtime has come back for another bundle since it was handed a replaced one:
        it has finished with that one, whatever it made of it."""
        if self.first_served is None:
            return False
        later = self.requests[self.first_served + 1 :]
        return any(r.endswith("/bundle.tar.gz") for r in later)

    @contextlib.contextmanager
    def running(self) -> Iterator[Interceptor]:
        app = Starlette(
            routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT"])]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=5,  # outlasts the 1 s polls it holds or forwards
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, "the interceptor to listen")
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(30)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    """Wait for a condition that must come true (nothing asserts how long it took)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}")


# -- a stolen key and what it signs ----------------------------------------------------------


def signing_key_of(control_plane: procs.ControlPlane, bundle: bytes) -> tuple[str, Any]:
    """The private key that signed `bundle`, unsealed from the control plane's database with
    its master key: what an attacker who compromised that key holds."""
    files = _bundle_files(bundle)
    token = json.loads(files[".signatures.json"])["signatures"][0]
    kid = jwt.get_unverified_header(token)["kid"]

    async def read() -> bytes:
        db = Database(control_plane.env["KAIZEN_DATABASE_URL"])
        try:
            async with db.session(SYSTEM) as session:
                row = await session.scalar(select(SigningKey).where(SigningKey.kid == kid))
                assert row is not None, kid
                return bytes(row.private_key_encrypted)
        finally:
            await db.dispose()

    master = base64.b64decode(control_plane.env["KAIZEN_MASTER_KEY"])
    der = unseal(master, asyncio.run(read()), kid.encode())
    return kid, serialization.load_der_private_key(der, password=None)


def forged_bundle(
    *, scope: str, kid: str, key: Any, revision: int, grant_to: str, token_jwks: dict[str, Any]
) -> bytes:
    """A bundle for `scope` that lets `grant_to` invoke every agent, signed with `key`."""
    policy = PolicySet.from_sources([("forged.yaml", ROLES % {"email": grant_to})])
    compiled = compile_policy(policy, CompileContext(organization_id=scope, jwks=token_jwks))
    return build_bundle(compiled, revision=revision, signing_key=key, kid=kid, scope=scope)


def _bundle_files(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        return {
            m.name.lstrip("/"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


# -- the runtimes under attack ---------------------------------------------------------------


@dataclass
class Runtime:
    """A real `kaizen-studio sidecar` or `gateway` process and where it answers."""

    process: Any
    url: str
    credential: str | None = None  # /status of a sidecar needs the gateway credential

    def get(self, path: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.credential}"} if self.credential else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=5)

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the runtime exited:\n{procs.output(self.process)}")
        try:
            self.get("/healthz")
        except httpx.TransportError:
            return False
        return True

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/status").json()
        return body


@contextlib.contextmanager
def sidecar(home: Path, control_plane: str, credential: str, **env: str) -> Iterator[Runtime]:
    grpc_port, http_port = procs.free_port(), procs.free_port()
    process = procs.start_sidecar(
        home,
        grpc_port,
        http_port,
        wait=False,
        KAIZEN_GATEWAY_TOKEN=credential,
        KAIZEN_CONTROL_PLANE_URL=control_plane,
        **env,
    )
    runtime = Runtime(process, f"http://127.0.0.1:{http_port}", credential)
    try:
        wait_for(runtime.answers, "the sidecar to listen")
        yield runtime
    finally:
        procs.stop(process)


@contextlib.contextmanager
def gateway(home: Path, control_plane: str, credential: str, **env: str) -> Iterator[Runtime]:
    port = procs.free_port()
    environ = procs.clean_env(
        KAIZEN_HOME=str(home),
        KAIZEN_GATEWAY_PORT=str(port),
        KAIZEN_GATEWAY_TOKEN=credential,
        KAIZEN_CONTROL_PLANE_URL=control_plane,
        KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{procs.free_port()}",
        **env,
    )
    process = procs.spawn([str(procs.BIN / "kaizen-studio"), "gateway"], env=environ)
    runtime = Runtime(process, f"http://127.0.0.1:{port}")
    try:
        wait_for(runtime.answers, "the gateway to listen")
        yield runtime
    finally:
        procs.stop(process)


def cap_address_space(pid: int, headroom: int = 1 * GIB) -> None:
    """Let the process grow by `headroom` at most: an attempt to allocate gigabytes then
    fails inside it (MemoryError) instead of taking this shared machine's memory."""
    size = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
    resource.prlimit(pid, resource.RLIMIT_AS, (size + headroom, size + headroom))


# -- hostile archives ------------------------------------------------------------------------


def _end() -> bytes:
    return b"\0" * 1024


def sparse_member_bundle() -> bytes:
    """~200 bytes of gzip: one PAX (GNU 1.0) sparse `data.json` that expands to 8 GiB."""
    info = tarfile.TarInfo("/data.json")
    info.size = 1024
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "/data.json",
        "GNU.sparse.realsize": str(8 * GIB),
    }
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    sparse_map = b"1\n" + str(8 * GIB - 1).encode() + b"\n1\n"
    data = sparse_map.ljust(512, b"\0") + b"x".ljust(512, b"\0")
    return gzip.compress(header + data + _end(), mtime=0)


def huge_member_bundle() -> bytes:
    """~100 bytes of gzip: a `data.json` header declaring 8 GiB, then almost nothing."""
    info = tarfile.TarInfo("/data.json")
    info.size = 8 * GIB
    return gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"{}".ljust(512, b"\0"), mtime=0)


def gzip_bomb_bundle() -> bytes:
    """~70 KiB of gzip that inflates to 72 MiB of zeros: past the decompressed cap."""
    return gzip.compress(b"\0" * (72 * 1024 * 1024), compresslevel=9, mtime=0)
