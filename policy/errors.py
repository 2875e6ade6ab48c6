"""The exceptions `policy/` raises; each maps to one HTTP/gRPC status in the runtimes."""

from __future__ import annotations

from typing import TypedDict


class ErrorDetail(TypedDict):
    """One problem in a policy source; `line`/`column` are 1-based, None when unknown."""

    file: str
    document: int | None
    field: str | None
    line: int | None
    column: int | None
    message: str


class PolicyError(Exception):
    """Base class of every error raised by `policy/`."""


class PolicyValidationError(PolicyError):
    """Policy source that does not parse or validate (the control plane answers 422)."""

    def __init__(self, details: list[ErrorDetail]) -> None:
        if not details:
            raise ValueError("PolicyValidationError needs at least one detail")
        self.details = details
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        super().__init__(format_detail(details[0]) + more)

    def format(self) -> str:
        return "\n".join(format_detail(detail) for detail in self.details)


class BundleError(PolicyError):
    """A bundle that cannot be built."""


class BundleVerificationError(PolicyError):
    """A bundle that must not be activated: unsigned, tampered, foreign, stale or malformed."""


def format_detail(detail: ErrorDetail) -> str:
    """`file:line:column: field: message`, the form editors and CI logs understand."""
    location = detail["file"]
    if detail["line"] is not None:
        location += f":{detail['line']}"
        if detail["column"] is not None:
            location += f":{detail['column']}"
    elif detail["document"] is not None:
        location += f" (document {detail['document']})"
    field = f"{detail['field']}: " if detail["field"] else ""
    return f"{location}: {field}{detail['message']}"
