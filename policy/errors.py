"""The one error table of every runtime (control plane, gateway, sidecar), and the
exceptions `policy/` raises, mapped in it.

Each error kind has a stable `code` (the JSON body's `error.code`), an HTTP status and a
gRPC status code name. The control plane's and the gateway's exception classes name only
their `code` and take both statuses from here; the sidecar's HTTP errors and its gRPC
ext_authz denials take theirs from here too (`grpc_code_for_http`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


@dataclass(frozen=True)
class ErrorKind:
    code: str
    http: int
    grpc: str  # a google.rpc.Code / grpc.StatusCode name


ERROR_KINDS: tuple[ErrorKind, ...] = (
    ErrorKind("error", 500, "INTERNAL"),
    ErrorKind("bad_request", 400, "INVALID_ARGUMENT"),
    ErrorKind("unauthenticated", 401, "UNAUTHENTICATED"),
    ErrorKind("payment_required", 402, "FAILED_PRECONDITION"),
    ErrorKind("forbidden", 403, "PERMISSION_DENIED"),
    ErrorKind("not_found", 404, "NOT_FOUND"),
    ErrorKind("method_not_allowed", 405, "UNIMPLEMENTED"),
    ErrorKind("not_acceptable", 406, "INVALID_ARGUMENT"),
    ErrorKind("conflict", 409, "ALREADY_EXISTS"),
    ErrorKind("payload_too_large", 413, "RESOURCE_EXHAUSTED"),
    ErrorKind("unsupported_media_type", 415, "INVALID_ARGUMENT"),
    ErrorKind("invalid", 422, "INVALID_ARGUMENT"),
    ErrorKind("invalid_input", 422, "INVALID_ARGUMENT"),
    ErrorKind("invalid_policy", 422, "INVALID_ARGUMENT"),
    ErrorKind("invalid_bundle", 422, "FAILED_PRECONDITION"),
    ErrorKind("limit_exceeded", 422, "RESOURCE_EXHAUSTED"),
    ErrorKind("pipeline_error", 422, "FAILED_PRECONDITION"),
    ErrorKind("rate_limited", 429, "RESOURCE_EXHAUSTED"),
    ErrorKind("provider_error", 502, "UNAVAILABLE"),
    ErrorKind("tool_error", 502, "UNAVAILABLE"),
    ErrorKind("unavailable", 503, "UNAVAILABLE"),
    ErrorKind("timeout", 504, "DEADLINE_EXCEEDED"),
    ErrorKind("provider_timeout", 504, "DEADLINE_EXCEEDED"),
    # Narrower kinds of the rows above (their clients act on the code).
    ErrorKind("mfa_required", 401, "UNAUTHENTICATED"),
    ErrorKind("mfa_invalid", 401, "UNAUTHENTICATED"),
    ErrorKind("sso_link_required", 403, "PERMISSION_DENIED"),
    ErrorKind("csrf_failed", 403, "PERMISSION_DENIED"),
    ErrorKind("mfa_enrolment_required", 403, "PERMISSION_DENIED"),
    ErrorKind("current_factor_required", 403, "PERMISSION_DENIED"),
    ErrorKind("evaluation_limit", 422, "RESOURCE_EXHAUSTED"),
    ErrorKind("quota_exceeded", 402, "RESOURCE_EXHAUSTED"),
)
ERROR_TABLE: dict[str, ErrorKind] = {kind.code: kind for kind in ERROR_KINDS}
# The first kind of each HTTP status: what a bare status (the sidecar's) means.
_BY_HTTP: dict[int, ErrorKind] = {}
for _kind in ERROR_TABLE.values():
    _BY_HTTP.setdefault(_kind.http, _kind)


def kind_for_http(status: int) -> ErrorKind:
    """The kind a bare HTTP status stands for (a 4xx not in the table is a bad request)."""
    return _BY_HTTP.get(status, ERROR_TABLE["bad_request" if 400 <= status < 500 else "error"])


def grpc_code_for_http(status: int) -> str:
    """The gRPC status code name an answer with this HTTP status carries."""
    return "OK" if 200 <= status < 300 else kind_for_http(status).grpc


def kind_of(error: BaseException) -> ErrorKind:
    """The row of a `policy` exception (anything else is an internal error)."""
    if isinstance(error, PolicyValidationError):
        return ERROR_TABLE["invalid_policy"]
    if isinstance(error, BundleVerificationError | BundleError):
        return ERROR_TABLE["invalid_bundle"]
    return ERROR_TABLE["error"]


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
