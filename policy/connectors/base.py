"""What every connector type shares: its settings, its errors and the shape of a result."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ErrorCode = Literal[
    "auth_failed",  # the database refused the user or password (the store: the key)
    "unreachable",  # no connection: refused, timed out, name does not resolve
    "tls",  # TLS was asked for and failed (unsupported, bad certificate, wrong host)
    "refused",  # the outbound guard will not contact the host
    "database",  # the database (name) does not exist or may not be used
    "credential_missing",  # no password is stored for the connector
    "read_only",  # a write on a read-only connector
    "query_failed",  # the statement ran and the database refused it
    "timeout",  # the statement ran past the connector's timeout
    "no_bucket",  # the bucket (Azure: container) does not exist
    "not_found",  # no such object
    "bucket_not_served",  # the bucket is not among the connector's `buckets`
    "too_large",  # an objects.put over the connector's max_bytes
    "request_failed",  # the object store refused the request otherwise
]
TLS_MODES = ("disable", "require", "verify-full")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}")
MAX_ROWS_CEILING = 100_000
MAX_BYTES_CEILING = 50_000_000


class ConnectorError(Exception):
    """A connector call that failed; `code` says how, `message` says what (never a secret)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to connect; everything but the password, which is read at run time."""

    type: str
    host: str
    port: int
    database: str
    username: str
    schema: str | None = None  # unqualified tables: PostgreSQL default `public`, MySQL the db
    tls: str = "verify-full"
    read_only: bool = True
    max_rows: int = 1000
    max_bytes: int = 1_000_000
    timeout_seconds: float = 10.0

    @property
    def default_schema(self) -> str:
        if self.schema:
            return self.schema
        return "public" if self.type == "postgresql" else self.database

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ConnectionSettings:
        """From a stored or bundled mapping; ValueError naming the field otherwise."""
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown connector setting {sorted(unknown)[0]!r}")
        try:
            settings = cls(**dict(raw))
        except TypeError as error:
            raise ValueError(f"connector settings: {error}") from None
        settings.validate()
        return settings

    def validate(self) -> None:
        size = _int(self.max_bytes) and 0 < self.max_bytes <= MAX_BYTES_CEILING
        rows = _int(self.max_rows) and 0 < self.max_rows <= MAX_ROWS_CEILING
        timeout = isinstance(self.timeout_seconds, int | float) and 0 < self.timeout_seconds <= 300
        username = isinstance(self.username, str) and 0 < len(self.username) <= 128
        checks: Sequence[tuple[str, bool, str]] = (
            ("host", isinstance(self.host, str) and bool(HOST.fullmatch(self.host)), "a host"),
            ("port", _int(self.port) and 0 < self.port < 65536, "1-65535"),
            ("database", _ident(self.database), "an identifier"),
            ("username", username, "1-128 characters"),
            ("schema", self.schema is None or _ident(self.schema), "an identifier"),
            ("tls", self.tls in TLS_MODES, " | ".join(TLS_MODES)),
            ("read_only", isinstance(self.read_only, bool), "true or false"),
            ("max_rows", rows, f"1-{MAX_ROWS_CEILING}"),
            ("max_bytes", size, f"1-{MAX_BYTES_CEILING}"),
            ("timeout_seconds", timeout, "more than 0 and at most 300"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"connector setting {name!r} must be {expected}")


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ident(value: object) -> bool:
    return isinstance(value, str) and bool(IDENTIFIER.fullmatch(value))


@dataclass
class QueryResult:
    """Rows as JSON values, cut at the connector's `max_rows` / `max_bytes` (and saying so)."""

    operation: str
    statement: str
    tables: list[str]
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    limit: str | None = None  # "max_rows=N" or "max_bytes=N" when truncated
    status: str | None = None  # the database's status for a write ("UPDATE 2")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.truncated:
            out["note"] = f"result cut at {self.limit}; {len(self.rows)} rows returned"
        return out


class RowCollector:
    """Adds rows until a limit would be passed; `truncated` then says which."""

    def __init__(self, result: QueryResult, max_rows: int, max_bytes: int) -> None:
        self.result, self.max_rows, self.max_bytes = result, max_rows, max_bytes
        self.size = 2

    def add(self, row: Sequence[Any]) -> bool:
        """False (and the result marked truncated) once a limit stops the rows."""
        if len(self.result.rows) >= self.max_rows:
            self._cut(f"max_rows={self.max_rows}")
            return False
        values = [jsonable(v) for v in row]
        size = len(json.dumps(values, ensure_ascii=False).encode()) + 1
        if self.size + size > self.max_bytes:
            self._cut(f"max_bytes={self.max_bytes}")
            return False
        self.size += size
        self.result.rows.append(values)
        return True

    def _cut(self, limit: str) -> None:
        self.result.truncated, self.result.limit = True, limit


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.date | datetime.time | datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)
