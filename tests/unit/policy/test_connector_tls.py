"""`tls: verify-full` checks the certificate against the connector's host *name* although
the driver dials the address the outbound guard checked (policy/connectors/network.py):
a local TLS server with a certificate for `db.test` only, reached at 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policy.connectors import ConnectionSettings
from policy.connectors.network import tls_context


def _certificate(tmp: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("db.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp / "cert.pem", tmp / "key.pem", pem.decode()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    cert, key, pem = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, pem
    finally:
        server.close()
        await server.wait_closed()


async def _greeting(host: str, port: int, ca: str) -> bytes:
    settings = ConnectionSettings("postgresql", host, port, "db", "u", tls="verify-full")
    context = tls_context(settings)
    assert context is not None
    context.load_verify_locations(cadata=ca)
    # As the drivers do: dial the address, pass it as server_hostname.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        return await reader.read(5)
    finally:
        writer.close()


async def test_the_certificate_is_checked_against_the_host_name(
    tls_server: tuple[int, str],
) -> None:
    port, ca = tls_server
    assert await _greeting("db.test", port, ca) == b"hello"


async def test_a_certificate_for_another_name_is_refused(tls_server: tuple[int, str]) -> None:
    port, ca = tls_server
    with pytest.raises(ssl.SSLCertVerificationError, match=r"other\.test"):
        await _greeting("other.test", port, ca)
