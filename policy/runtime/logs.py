"""One log format for every runtime (control plane, sidecar, gateway): a JSON object per
line on stderr with the same keys everywhere —

    time, level, logger, message, request_id, organization_id, process, [worker], [exception]

`request_id` and `organization_id` come from context variables the control plane sets per
request (None elsewhere); `process` names the runtime. `KAIZEN_LOG_JSON=false` gives a
plain one-line text format for a terminal instead. Messages are written by our code,
which never logs a credential, a token or a secret value.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
organization_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "organization_id", default=None
)
KEYS = ("time", "level", "logger", "message", "request_id", "organization_id", "process")


class JsonFormatter(logging.Formatter):
    def __init__(self, **static: Any) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
            "organization_id": organization_id_var.get(),
            **self.static,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def formatter(process: str, *, json_format: bool = True, **static: Any) -> logging.Formatter:
    if json_format:
        return JsonFormatter(process=process, **static)
    extra = "".join(f" [{k} {v}]" for k, v in static.items())
    return logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [{process}]{extra} %(message)s")


def configure_logging(
    process: str, level: str = "INFO", *, json_format: bool = True, **static: Any
) -> None:
    """Send every log record of this process to stderr in the one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(process, json_format=json_format, **static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
