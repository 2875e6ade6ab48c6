"""One exception hierarchy for the control plane, mapped to HTTP (and gRPC) in one table.

Services raise these; they never raise `HTTPException`. `app.py` installs the handlers.
"""

from __future__ import annotations

from typing import Any


class KaizenError(Exception):
    code = "error"
    status = 500
    grpc_status = "INTERNAL"

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
    code, status, grpc_status = "invalid", 422, "INVALID_ARGUMENT"


class Unauthenticated(KaizenError):
    code, status, grpc_status = "unauthenticated", 401, "UNAUTHENTICATED"

    def __init__(self, message: str = "missing or invalid credential", **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(KaizenError):
    code, status, grpc_status = "forbidden", 403, "PERMISSION_DENIED"


class NotFound(KaizenError):
    code, status, grpc_status = "not_found", 404, "NOT_FOUND"


class Conflict(KaizenError):
    code, status, grpc_status = "conflict", 409, "ALREADY_EXISTS"


class PayloadTooLarge(KaizenError):
    code, status, grpc_status = "payload_too_large", 413, "RESOURCE_EXHAUSTED"


class RateLimited(KaizenError):
    code, status, grpc_status = "rate_limited", 429, "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Unavailable(KaizenError):
    code, status, grpc_status = "unavailable", 503, "UNAVAILABLE"
