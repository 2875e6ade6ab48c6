"""S3 (and services speaking its API) through aiobotocore: list, get and put one object.

Every connection goes through the outbound guard: aiobotocore's aiohttp session is made
with `GuardedConnector` (`_GuardedHttpSession`), so each host — a custom endpoint, or AWS's
virtual-hosted `<bucket>.s3.<region>.amazonaws.com` — is resolved by the guard and dialled
at the address it checked; no proxy from the environment is used (the connector refuses
one). A custom endpoint is addressed path-style, so the bucket never becomes a host name
the tenant chose. One attempt per call (no retries): a connector call is a decision, and
its failure goes back to the caller at once.

Errors are re-worded (`ConnectorError`): botocore's carry the request URL but never the
secret key, and the messages here carry neither; botocore's DEBUG lines (signed headers)
are not written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiobotocore.session
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)

from policy.connectors.base import ConnectorError
from policy.connectors.objects import ObjectCall, ObjectResult, S3Settings
from policy.net.outbound import OutboundGuard, OutboundRefused, Unresolvable
from policy.net.outbound_aiohttp import GuardedConnector

_AUTH = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden"}
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_CHUNK = 64 * 1024
# botocore logs each request's Authorization header, signature and string to sign at DEBUG:
# not the secret key, but a signed request is a credential while it is valid. A process
# run at DEBUG (KAIZEN_LOG_LEVEL) must not write them, so these loggers stop at INFO.
for _name in ("botocore", "aiobotocore"):
    _logger = logging.getLogger(_name)
    if _logger.level < logging.INFO:
        _logger.setLevel(logging.INFO)
# botocore's session variables: (config name, environment variables, default, conversion).
_NO_HOST_CONFIG = {
    "profile": (None, None, None, None),
    "config_file": (None, None, os.devnull, None),
    "credentials_file": (None, None, os.devnull, None),
}


def _session_class(guard: OutboundGuard) -> type[AIOHTTPSession]:
    class _GuardedHttpSession(AIOHTTPSession):  # type: ignore[misc]
        """aiobotocore's session, its connector the outbound guard's."""

        async def _create_connector(self, proxy_url: str | None) -> GuardedConnector:
            return GuardedConnector(guard, limit=4, ssl=True)

    return _GuardedHttpSession


@asynccontextmanager
async def _client(settings: S3Settings, secret: str, guard: OutboundGuard) -> AsyncIterator[Any]:
    config = AioConfig(
        http_session_cls=_session_class(guard),
        connect_timeout=settings.timeout_seconds,
        read_timeout=settings.timeout_seconds,
        retries={"total_max_attempts": 1},
        s3={"addressing_style": "path" if settings.endpoint_url else "virtual"},
        proxies={},
        signature_version="s3v4",
    )
    # The connector's settings are the whole configuration: no AWS profile, config or
    # credentials file of the host running it (AWS_PROFILE naming none would fail the call).
    session = aiobotocore.session.AioSession(session_vars=_NO_HOST_CONFIG)
    async with session.create_client(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.endpoint,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=secret,
        config=config,
    ) as client:
        yield client


def _error(settings: S3Settings, error: Exception, bucket: str | None) -> ConnectorError:
    where = settings.endpoint
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _AUTH or status == 403:
            return ConnectorError(
                "auth_failed",
                f"S3 at {where} refused access key {settings.access_key_id!r} "
                f"({code or status}: wrong secret, or no access to this)",
            )
        if bucket is not None and code in _NO_BUCKET:
            return ConnectorError("no_bucket", f"bucket {bucket!r} does not exist at {where}")
        if code == "NoSuchKey":
            return ConnectorError("not_found", "no such object")
        return ConnectorError("request_failed", f"S3 refused the request ({code or status})")
    if isinstance(error, HTTPClientError):
        cause = error.kwargs.get("error")
        if isinstance(cause, Unresolvable):
            return ConnectorError("unreachable", cause.message)
        if isinstance(cause, OutboundRefused):
            return ConnectorError("refused", cause.message)
    if isinstance(error, SSLError):
        return ConnectorError("tls", f"TLS with {where} failed")
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
        return ConnectorError("unreachable", f"S3 at {where} is unreachable")
    if isinstance(error, ReadTimeoutError):
        return ConnectorError(
            "timeout", f"S3 did not answer within timeout_seconds={settings.timeout_seconds:g}"
        )
    if isinstance(error, OutboundRefused):
        return ConnectorError("refused", error.message)
    return ConnectorError("request_failed", f"S3 request failed ({type(error).__name__})")


async def test(settings: S3Settings, secret: str, guard: OutboundGuard) -> str:
    """Sign in and reach each configured bucket (or list the buckets when none is named)."""
    bucket: str | None = None
    try:
        async with _client(settings, secret, guard) as client:
            if not settings.buckets:
                answer = await client.list_buckets()
                return f"S3: {len(answer.get('Buckets', []))} buckets visible"
            for bucket in settings.buckets:
                await client.head_bucket(Bucket=bucket)
            return f"S3: buckets {', '.join(settings.buckets)} reachable"
    except (BotoCoreError, ClientError, OutboundRefused) as error:
        raise _error(settings, error, bucket) from None


async def run(
    settings: S3Settings, secret: str, guard: OutboundGuard, call: ObjectCall
) -> ObjectResult:
    try:
        async with _client(settings, secret, guard) as client:
            if call.operation == "objects.list":
                return await _list(settings, client, call)
            if call.operation == "objects.get":
                return await _get(settings, client, call)
            return await _put(client, call)
    except (BotoCoreError, ClientError, OutboundRefused) as error:
        raise _error(settings, error, call.bucket) from None


async def _list(settings: S3Settings, client: Any, call: ObjectCall) -> ObjectResult:
    result = ObjectResult(call.operation, call.bucket, prefix=call.key, objects=[])
    assert result.objects is not None
    token: str | None = None
    while True:
        wanted = settings.max_objects - len(result.objects)
        kwargs: dict[str, Any] = {"Bucket": call.bucket, "Prefix": call.key}
        kwargs["MaxKeys"] = min(wanted + 1, 1000)  # one more says whether the limit cut it
        if token:
            kwargs["ContinuationToken"] = token
        page = await client.list_objects_v2(**kwargs)
        for item in page.get("Contents", []):
            if len(result.objects) >= settings.max_objects:
                result.truncated, result.limit = True, f"max_objects={settings.max_objects}"
                return result
            result.objects.append(
                {
                    "key": item["Key"],
                    "size": item.get("Size"),
                    "last_modified": item["LastModified"].isoformat()
                    if item.get("LastModified")
                    else None,
                }
            )
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return result


async def _get(settings: S3Settings, client: Any, call: ObjectCall) -> ObjectResult:
    answer = await client.get_object(Bucket=call.bucket, Key=call.key)
    size = int(answer.get("ContentLength") or 0)
    result = ObjectResult(
        call.operation, call.bucket, key=call.key, size=size, content_type=answer.get("ContentType")
    )
    body = answer["Body"]
    data = bytearray()
    try:
        while len(data) <= settings.max_bytes:
            chunk = await body.read(min(_CHUNK, settings.max_bytes + 1 - len(data)))
            if not chunk:
                break
            data.extend(chunk)
    finally:
        body.close()  # the rest is never read: the connection is dropped, not drained
    if len(data) > settings.max_bytes:
        del data[settings.max_bytes :]
        result.truncated, result.limit = True, f"max_bytes={settings.max_bytes}"
    result.set_content(bytes(data))
    return result


async def _put(client: Any, call: ObjectCall) -> ObjectResult:
    assert call.content is not None
    kwargs: dict[str, Any] = {"Bucket": call.bucket, "Key": call.key, "Body": call.content}
    if call.content_type:
        kwargs["ContentType"] = call.content_type
    answer = await client.put_object(**kwargs)
    return ObjectResult(
        call.operation,
        call.bucket,
        key=call.key,
        size=len(call.content),
        etag=str(answer.get("ETag", "")).strip('"') or None,
    )
