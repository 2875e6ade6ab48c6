"""The gateway's exceptions; `app.py` maps each to one HTTP status in one place."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class; `code` is the JSON error code, `status` the HTTP status."""

    code = "error"
    status = 500

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.run: Any = None  # the executor's Run when the error ended one


class Unauthenticated(GatewayError):
    code, status = "unauthenticated", 401


class Forbidden(GatewayError):
    """The sidecar refused a nested call (an agent used as a tool, a pipeline step)."""

    code, status = "forbidden", 403


class NotFound(GatewayError):
    code, status = "not_found", 404


class InvalidInput(GatewayError):
    code, status = "invalid_input", 422


class LimitExceeded(GatewayError):
    """A run passed its max_steps or max_cost_usd; the execution is recorded as failed."""

    code, status = "limit_exceeded", 422


class RunTimeout(GatewayError):
    """A run passed its timeout_seconds."""

    code, status = "timeout", 504


class ProviderError(GatewayError):
    """The model provider answered with an error or something that is not its protocol."""

    code, status = "provider_error", 502


class ProviderTimeout(GatewayError):
    """The model provider did not answer in time."""

    code, status = "provider_timeout", 504


class ToolError(GatewayError):
    """A tool (HTTP or MCP) failed; the model may see the message, the caller gets 502."""

    code, status = "tool_error", 502


class PipelineError(GatewayError):
    """A pattern could not continue (no route, no consensus, unknown hand-off target)."""

    code, status = "pipeline_error", 422
