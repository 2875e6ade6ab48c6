"""The control plane's exceptions. Each names its `code`; its HTTP and gRPC statuses come
from the one error table (`policy/errors.py`, shared with the gateway and the sidecar).

Services raise these; they never raise `HTTPException`. `app.py` installs the handlers and
maps `policy` errors (compile errors with line and column, bundle errors) through the same
table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from starlette.exceptions import HTTPException

from policy.errors import ERROR_TABLE


class KaizenError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = ERROR_TABLE[cls.code]  # a KeyError here: add the kind to the table
        cls.status, cls.grpc_status = kind.http, kind.grpc

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class Invalid(KaizenError):
    code = "invalid"


class BadRequest(KaizenError):
    """A request that cannot be read at all, e.g. a webhook whose signature does not verify."""

    code = "bad_request"


class Unauthenticated(KaizenError):
    code = "unauthenticated"

    def __init__(self, message: str = "missing or invalid credential", **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(KaizenError):
    code = "forbidden"


class NotFound(KaizenError):
    code = "not_found"


class Conflict(KaizenError):
    code = "conflict"


class QuotaExceeded(KaizenError):
    """Creating this would take the organisation past a limit of its plan (M12)."""

    code = "quota_exceeded"


class PayloadTooLarge(KaizenError, HTTPException):  # type: ignore[misc]  # both carry headers
    """Also an HTTPException: raised while FastAPI reads a body, it passes through as itself
    (FastAPI turns any other exception there into a 400)."""

    code = "payload_too_large"

    def __init__(self, message: str) -> None:
        KaizenError.__init__(self, message)
        HTTPException.__init__(self, self.status, message)


class RateLimited(KaizenError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Unavailable(KaizenError):
    code = "unavailable"


class ProviderError(KaizenError):
    """An outside service the request needed (Stripe) refused it or did not answer."""

    code = "provider_error"


def field_path(loc: tuple[Any, ...]) -> str:
    """A validation error's location as the field a client sent (`decisions.0.time`)."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def invalid_fields(errors: Iterable[Mapping[str, Any]]) -> Invalid:
    """The 422 for pydantic-style errors (`loc`, `msg`), each detail naming its field; the
    answer FastAPI's own request validation gets."""
    details = [
        {"field": field_path(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
        for e in errors
    ]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return Invalid(message or "invalid request", details=details)
