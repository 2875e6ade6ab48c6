"""The gateway's exceptions. Each names its `code`; its HTTP status comes from the one
error table (`policy/errors.py`, shared with the control plane and the sidecar)."""

from __future__ import annotations

from typing import Any, ClassVar

from policy.errors import ERROR_TABLE


class GatewayError(Exception):
    """Base class; `code` is the JSON error code, `status` the HTTP status (from the table)."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = ERROR_TABLE[cls.code].http  # a KeyError here: add the kind to the table

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.run: Any = None  # the executor's Run when the error ended one


class Unauthenticated(GatewayError):
    code = "unauthenticated"


class Forbidden(GatewayError):
    """The sidecar refused a nested call (an agent used as a tool, a pipeline step)."""

    code = "forbidden"


class NotFound(GatewayError):
    code = "not_found"


class InvalidInput(GatewayError):
    code = "invalid_input"


class LimitExceeded(GatewayError):
    """A run passed its max_steps or max_cost_usd; the execution is recorded as failed."""

    code = "limit_exceeded"


class RunTimeout(GatewayError):
    """A run passed its timeout_seconds."""

    code = "timeout"


class ProviderError(GatewayError):
    """The model provider answered with an error or something that is not its protocol."""

    code = "provider_error"


class ProviderTimeout(GatewayError):
    """The model provider did not answer in time."""

    code = "provider_timeout"


class ToolError(GatewayError):
    """A tool (HTTP or MCP) failed; the model may see the message, the caller gets 502."""

    code = "tool_error"


class PipelineError(GatewayError):
    """A pattern could not continue (no route, no consensus, unknown hand-off target)."""

    code = "pipeline_error"
