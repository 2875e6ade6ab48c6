"""One log format for every runtime: the control plane, the sidecar and the gateway each
configure `policy/runtime/logs.py`, and a record comes out as one JSON object with the same keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from authz_sidecar.settings import SidecarSettings  # noqa: TID251  (each runtime's own setup)
from authz_sidecar.supervisor import _configure_logging as sidecar_logging  # noqa: TID251
from control_plane import observability
from policy.runtime import logs


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    logger = logging.getLogger()
    saved, level = logger.handlers[:], logger.level
    yield logger
    logger.handlers[:], logger.level = saved, level


def _line(root: logging.Logger, configure: object) -> dict[str, object]:
    assert callable(configure)
    configure()
    sink = io.StringIO()
    root.handlers[0].stream = sink  # type: ignore[attr-defined]
    token = logs.request_id_var.set("req-1")
    try:
        logging.getLogger("kaizen.test").warning("hello %s", "world")
    finally:
        logs.request_id_var.reset(token)
    parsed: dict[str, object] = json.loads(sink.getvalue())
    return parsed


@pytest.mark.parametrize(
    ("process", "configure"),
    [
        ("control-plane", lambda: observability.configure_logging("INFO")),
        ("sidecar", lambda: sidecar_logging(SidecarSettings(), 1)),
        ("gateway", lambda: logs.configure_logging("gateway", "INFO")),
    ],
)
def test_every_runtime_logs_the_same_json_keys(
    root: logging.Logger, process: str, configure: object
) -> None:
    entry = _line(root, configure)
    assert set(logs.KEYS) <= set(entry), entry
    assert entry["process"] == process
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "req-1"


def test_plain_text_when_json_is_off(root: logging.Logger) -> None:
    logs.configure_logging("gateway", "INFO", json_format=False)
    sink = io.StringIO()
    root.handlers[0].stream = sink  # type: ignore[attr-defined]
    logging.getLogger("kaizen.test").warning("plain")
    assert "[gateway] plain" in sink.getvalue()
