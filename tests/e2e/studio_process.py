"""A `kaizen-studio control-plane` process serving the built studio, for the browser tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_up import _kaizen_studio

DIST = Path(__file__).resolve().parents[2] / "control_plane" / "ui" / "dist"


def require_built_studio() -> None:
    if not (DIST / "index.html").is_file():
        pytest.fail(
            "the web studio is not built: run `make test` (or `cd control_plane/ui && "
            "npm ci && npm run build`) first"
        )


@contextmanager
def serving(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """The control plane on `port` with `env`, its output in `log`; its URL once healthy.
    Stopped on the way out, and its log must hold no traceback."""
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [_kaizen_studio(), "control-plane", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert process.poll() is None, log.read_text()
        else:
            pytest.fail(f"control plane did not start: {log.read_text()}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert "Traceback" not in log.read_text(), log.read_text()
