"""What the object-store connectors share: their settings, what a call names, its result.

An object-store call is `objects.list` (a bucket and a key prefix), `objects.get` or
`objects.put` (a bucket and a key). Each is decided by the sidecar before it runs, with the
object as `<bucket>/<key>` (list: `<bucket>/<prefix>`), so policy can allow reads under a
prefix, hold puts or deny a bucket (ADR 0014). That only holds if the name a policy sees is
the object the store serves, so `ObjectCall.parse` refuses what a client or server could
read as another object: `.`/`..` segments (URL normalisation), backslashes (read as `/` by
some clients), control characters, over-long keys.

The endpoint is the tenant's word: an `http`/`https` URL that passes the outbound guard's
syntax gate here and its address check on every connection (`policy.net.outbound_aiohttp`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from policy.connectors.base import MAX_BYTES_CEILING
from policy.net.outbound import OutboundRefused, parse_target

OPERATIONS = ("objects.list", "objects.get", "objects.put")
ObjectAction = Literal["read", "write"]
ACTION_OF: Mapping[str, ObjectAction] = {
    "objects.list": "read",
    "objects.get": "read",
    "objects.put": "write",
}
# S3 bucket names (3-63: lowercase letters, digits, '.', '-'); Azure containers are the
# same without '.' (the service refuses one with its own error).
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_KEY_BYTES = 1024
MAX_OBJECTS_CEILING = 10_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REGION = re.compile(r"[a-z0-9-]{1,32}")
_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9]{1,128}")
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


class ObjectRefused(Exception):
    """A call that names no object a policy could: `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class ObjectStoreSettings:
    """Where the store is and the limits of a call; the credential is read at run time."""

    type: str
    buckets: tuple[str, ...] = ()  # the only buckets (containers) served; empty: any
    read_only: bool = True
    max_bytes: int = 1_000_000  # objects.get is cut here; objects.put refused past it
    max_objects: int = 1000  # objects.list is cut here
    timeout_seconds: float = 10.0

    ENDPOINT_FIELD: ClassVar[str] = "endpoint_url"

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["buckets"] = list(self.buckets)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ObjectStoreSettings:
        """From a stored or bundled mapping; ValueError naming the field otherwise."""
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown connector setting {sorted(unknown)[0]!r}")
        values = dict(raw)
        buckets = values.get("buckets", ())
        if not isinstance(buckets, list | tuple):
            raise ValueError("connector setting 'buckets' must be a list of bucket names")
        values["buckets"] = tuple(buckets)
        try:
            settings = cls(**values)
        except TypeError as error:
            raise ValueError(f"connector settings: {error}") from None
        settings.validate()
        return settings

    def validate(self) -> None:
        def whole(value: object, low: int, high: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

        timeout = isinstance(self.timeout_seconds, int | float) and 0 < self.timeout_seconds <= 300
        buckets = all(isinstance(b, str) and BUCKET.fullmatch(b) for b in self.buckets)
        checks = (
            ("buckets", buckets and len(self.buckets) <= 100, "at most 100 bucket names"),
            ("read_only", isinstance(self.read_only, bool), "true or false"),
            ("max_bytes", whole(self.max_bytes, 1, MAX_BYTES_CEILING), f"1-{MAX_BYTES_CEILING}"),
            (
                "max_objects",
                whole(self.max_objects, 1, MAX_OBJECTS_CEILING),
                f"1-{MAX_OBJECTS_CEILING}",
            ),
            ("timeout_seconds", timeout, "more than 0 and at most 300"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"connector setting {name!r} must be {expected}")
        try:
            target = parse_target(self.endpoint)
        except OutboundRefused as refused:
            raise ValueError(
                f"connector setting {self.ENDPOINT_FIELD!r}: {refused.message}"
            ) from None
        if "?" in self.endpoint or "#" in self.endpoint or target.scheme not in ("http", "https"):
            raise ValueError(
                f"connector setting {self.ENDPOINT_FIELD!r} must be an http(s) URL "
                "without query or fragment"
            )


@dataclass(frozen=True, kw_only=True)
class S3Settings(ObjectStoreSettings):
    """S3 or a service speaking its API. `endpoint_url` None: AWS's regional endpoint."""

    type: str = "s3"
    access_key_id: str  # like a database user name: shown; the secret key is the credential
    region: str = "us-east-1"
    endpoint_url: str | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"

    def validate(self) -> None:
        if self.type != "s3":
            raise ValueError("connector setting 'type' must be s3")
        if not isinstance(self.access_key_id, str) or not _ACCESS_KEY_ID.fullmatch(
            self.access_key_id
        ):
            raise ValueError("connector setting 'access_key_id' must be 1-128 letters or digits")
        if not isinstance(self.region, str) or not _REGION.fullmatch(self.region):
            raise ValueError("connector setting 'region' must be an AWS region like us-east-1")
        if self.endpoint_url is not None and not isinstance(self.endpoint_url, str):
            raise ValueError("connector setting 'endpoint_url' must be a URL")
        super().validate()


@dataclass(frozen=True, kw_only=True)
class AzureBlobSettings(ObjectStoreSettings):
    """Azure Blob Storage: an account, signed with its account key (the credential).
    `account_url` None: `https://<account_name>.blob.core.windows.net`."""

    type: str = "azure_blob"
    account_name: str
    account_url: str | None = None

    ENDPOINT_FIELD: ClassVar[str] = "account_url"

    @property
    def endpoint(self) -> str:
        return self.account_url or f"https://{self.account_name}.blob.core.windows.net"

    def validate(self) -> None:
        if self.type != "azure_blob":
            raise ValueError("connector setting 'type' must be azure_blob")
        if not isinstance(self.account_name, str) or not _ACCOUNT_NAME.fullmatch(self.account_name):
            raise ValueError(
                "connector setting 'account_name' must be 3-24 lowercase letters or digits"
            )
        if self.account_url is not None and not isinstance(self.account_url, str):
            raise ValueError("connector setting 'account_url' must be a URL")
        super().validate()


@dataclass(frozen=True)
class ObjectCall:
    """One call as policy sees it: `object` is `<bucket>/<key>` (list: `<bucket>/<prefix>`)."""

    operation: str  # objects.list | objects.get | objects.put
    bucket: str
    key: str  # objects.list: the prefix ("" for the whole bucket)
    content: bytes | None = None  # objects.put
    content_type: str | None = None

    @property
    def action(self) -> ObjectAction:
        return ACTION_OF[self.operation]

    @property
    def object(self) -> str:
        return f"{self.bucket}/{self.key}"

    def check_body(self) -> dict[str, Any]:
        """What the sidecar is asked with (and an approval grant binds): the object, and for
        a put the content's size and SHA-256, so a grant is for these bytes only."""
        name = "prefix" if self.operation == "objects.list" else "key"
        body: dict[str, Any] = {"bucket": self.bucket, name: self.key}
        if self.content is not None:
            body["bytes"] = len(self.content)
            body["sha256"] = hashlib.sha256(self.content).hexdigest()
        return body

    @classmethod
    def parse(cls, operation: str, arguments: Mapping[str, Any]) -> ObjectCall:
        """From a model's tool arguments; ObjectRefused naming what is wrong."""
        if operation not in OPERATIONS:
            raise ObjectRefused(f"operation must be one of {', '.join(OPERATIONS)}")
        bucket = arguments.get("bucket")
        if not isinstance(bucket, str) or not BUCKET.fullmatch(bucket):
            raise ObjectRefused("bucket must be a bucket name (3-63 of a-z, 0-9, '.', '-')")
        if operation == "objects.list":
            prefix = arguments.get("prefix", "")
            if prefix is None:
                prefix = ""
            return cls(operation, bucket, object_name(prefix, "prefix", allow_empty=True))
        key = object_name(arguments.get("key"), "key", allow_empty=False)
        if operation == "objects.get":
            return cls(operation, bucket, key)
        content = _content(arguments)
        content_type = arguments.get("content_type")
        if content_type is not None and (
            not isinstance(content_type, str)
            or len(content_type) > 255
            or _CONTROL.search(content_type)
        ):
            raise ObjectRefused("content_type must be a media type such as text/plain")
        return cls(operation, bucket, key, content, content_type)


def object_name(value: object, what: str, *, allow_empty: bool) -> str:
    """A key or prefix that names one thing to the store and to policy alike."""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ObjectRefused(f"{what} must be a non-empty string")
    if len(value.encode()) > MAX_KEY_BYTES:
        raise ObjectRefused(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(value) or "\\" in value:
        raise ObjectRefused(f"{what} may not hold control characters or backslashes")
    segments = value.split("/")
    if any(s in (".", "..") for s in segments):
        raise ObjectRefused(f"{what} may not hold '.' or '..' segments")
    if value.startswith("/") or "//" in value:
        raise ObjectRefused(f"{what} may not start with '/' or hold '//'")
    return value


def _content(arguments: Mapping[str, Any]) -> bytes:
    text, encoded = arguments.get("content"), arguments.get("content_base64")
    if (text is None) == (encoded is None):
        raise ObjectRefused("objects.put needs exactly one of content (text) or content_base64")
    if text is not None:
        if not isinstance(text, str):
            raise ObjectRefused("content must be a string")
        return text.encode()
    if not isinstance(encoded, str):
        raise ObjectRefused("content_base64 must be a string")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ObjectRefused("content_base64 is not valid base64") from None


@dataclass
class ObjectResult:
    """What an object call returns to the model: cut at the connector's limits, saying so."""

    operation: str
    bucket: str
    key: str | None = None
    prefix: str | None = None
    objects: list[dict[str, Any]] | None = None  # objects.list
    size: int | None = None  # objects.get: the whole object's; objects.put: written
    content_type: str | None = None
    content: str | None = None  # objects.get, when the bytes read are UTF-8
    content_base64: str | None = None  # objects.get otherwise
    etag: str | None = None
    truncated: bool = False
    limit: str | None = None  # "max_objects=N" / "max_bytes=N" when truncated
    extra: dict[str, Any] = field(default_factory=dict)

    def set_content(self, data: bytes) -> None:
        try:
            self.content = data.decode()
        except UnicodeDecodeError:
            # A cut may split a character: keep the bytes whole as base64 then.
            self.content_base64 = base64.b64encode(data).decode()

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None and k != "extra"}
        out.update(self.extra)
        if self.truncated:
            if self.operation == "objects.list":
                out["note"] = f"listing cut at {self.limit}; {len(self.objects or [])} returned"
            else:
                out["note"] = f"content cut at {self.limit} of {self.size} bytes"
        return out
