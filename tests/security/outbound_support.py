"""A real local HTTP(S) server for the outbound-guard attacks: it records what reached it."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Seen:
    path: str
    host: str
    headers: dict[str, str]


@dataclass
class Target:
    port: int
    seen: list[Seen] = field(default_factory=list)
    redirect_to: str = ""
    json: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _app(target: Target) -> Starlette:
    async def anything(request: Request) -> Response:
        target.seen.append(
            Seen(request.url.path, request.headers.get("host", ""), dict(request.headers))
        )
        if request.url.path == "/redirect":
            return RedirectResponse(target.redirect_to, status_code=302)
        if target.json is not None:
            return JSONResponse(target.json)
        return Response("hello from 127.0.0.1")

    return Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])


@asynccontextmanager
async def local_server(
    certfile: Path | None = None, keyfile: Path | None = None
) -> AsyncIterator[Target]:
    target = Target(free_port())
    config = uvicorn.Config(
        _app(target),
        host="127.0.0.1",
        port=target.port,
        log_level="warning",
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield target
    finally:
        server.should_exit = True
        await task


def self_signed(directory: Path, name: str) -> tuple[Path, Path, ssl.SSLContext]:
    """A certificate for `name` only, and a client context that trusts exactly it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(cafile=str(certfile))
    return certfile, keyfile, context
