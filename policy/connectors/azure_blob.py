"""Azure Blob Storage through azure-storage-blob's aio client: list, get and put one blob.

A bucket here is a container. Requests are signed with the account key (Shared Key), the
connector's credential. The SDK's aiohttp transport is handed a session whose connector is
the outbound guard's (`GuardedConnector`: every host resolved by the guard and dialled at
the address it checked, no proxy), with environment settings off. One attempt per call
(`retry_total=0`). Downloads ask the service for at most `max_bytes + 1` bytes at a time,
so a cut read never fetches the whole blob.

Errors are re-worded (`ConnectorError`); the SDK's messages carry no key, and these carry
neither key nor signature.
"""

from __future__ import annotations

import binascii
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient

from policy.connectors.base import ConnectorError
from policy.connectors.objects import AzureBlobSettings, ObjectCall, ObjectResult
from policy.net.outbound import OutboundGuard, OutboundRefused, Unresolvable
from policy.net.outbound_aiohttp import GuardedConnector

_MAX_GET_CHUNK = 4 * 1024 * 1024


@asynccontextmanager
async def _service(
    settings: AzureBlobSettings, key: str, guard: OutboundGuard
) -> AsyncIterator[BlobServiceClient]:
    try:
        binascii.a2b_base64(key.encode(), strict_mode=True)
    except (binascii.Error, ValueError):
        raise ConnectorError(
            "auth_failed", "the stored account key is not base64 (copy it from the account)"
        ) from None
    get_size = min(settings.max_bytes + 1, _MAX_GET_CHUNK)
    session = aiohttp.ClientSession(
        connector=GuardedConnector(guard, limit=4, ssl=True),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    try:
        service = BlobServiceClient(
            settings.endpoint,
            credential=AzureNamedKeyCredential(settings.account_name, key),
            transport=AioHttpTransport(session=session, session_owner=False),
            use_env_settings=False,
            retry_total=0,
            connection_timeout=settings.timeout_seconds,
            read_timeout=settings.timeout_seconds,
            max_single_get_size=get_size,
            max_chunk_get_size=get_size,
        )
        async with service:
            yield service
    finally:
        await session.close()


def _error(settings: AzureBlobSettings, error: Exception, bucket: str | None) -> ConnectorError:
    where = settings.endpoint
    if isinstance(error, ConnectorError):
        return error
    if isinstance(error, OutboundRefused):
        if isinstance(error, Unresolvable):
            return ConnectorError("unreachable", error.message)
        return ConnectorError("refused", error.message)
    inner = getattr(error, "inner_exception", None)
    if isinstance(inner, OutboundRefused):
        return _error(settings, inner, bucket)
    if isinstance(error, ClientAuthenticationError) or (
        isinstance(error, HttpResponseError) and error.status_code == 403
    ):
        return ConnectorError(
            "auth_failed",
            f"Azure Blob at {where} refused account {settings.account_name!r} "
            "(wrong account key, or no access to this)",
        )
    code = getattr(error, "error_code", None)  # set by the storage SDK on its errors
    if isinstance(error, ResourceNotFoundError):
        if code == "ContainerNotFound" and bucket is not None:
            return ConnectorError("no_bucket", f"container {bucket!r} does not exist at {where}")
        if code == "BlobNotFound":
            return ConnectorError("not_found", "no such object")
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return ConnectorError(
            "request_failed",
            f"Azure Blob refused the request ({code or error.status_code})",
        )
    if isinstance(error, ServiceRequestError):
        if isinstance(inner, aiohttp.ClientSSLError | ssl.SSLError):
            return ConnectorError("tls", f"TLS with {where} failed")
        return ConnectorError("unreachable", f"Azure Blob at {where} is unreachable")
    if isinstance(error, ServiceResponseError):
        return ConnectorError(
            "timeout",
            f"Azure Blob did not answer within timeout_seconds={settings.timeout_seconds:g}",
        )
    return ConnectorError("request_failed", f"Azure Blob request failed ({type(error).__name__})")


_FAILURES = (AzureError, OutboundRefused, aiohttp.ClientError, TimeoutError, ConnectorError)


async def test(settings: AzureBlobSettings, key: str, guard: OutboundGuard) -> str:
    """Sign in and reach each configured container (or the account when none is named)."""
    container: str | None = None
    try:
        async with _service(settings, key, guard) as service:
            if not settings.buckets:
                info = await service.get_account_information()
                return f"Azure Blob: account {settings.account_name} ({info.get('sku_name')})"
            for container in settings.buckets:
                await service.get_container_client(container).get_container_properties()
            return f"Azure Blob: containers {', '.join(settings.buckets)} reachable"
    except _FAILURES as error:
        raise _error(settings, error, container) from None


async def run(
    settings: AzureBlobSettings, key: str, guard: OutboundGuard, call: ObjectCall
) -> ObjectResult:
    try:
        async with _service(settings, key, guard) as service:
            container = service.get_container_client(call.bucket)
            if call.operation == "objects.list":
                return await _list(settings, container, call)
            if call.operation == "objects.get":
                return await _get(settings, container, call)
            return await _put(container, call)
    except _FAILURES as error:
        raise _error(settings, error, call.bucket) from None


async def _list(settings: AzureBlobSettings, container: Any, call: ObjectCall) -> ObjectResult:
    result = ObjectResult(call.operation, call.bucket, prefix=call.key, objects=[])
    assert result.objects is not None
    page_size = min(settings.max_objects + 1, 5000)
    async for blob in container.list_blobs(name_starts_with=call.key, results_per_page=page_size):
        if len(result.objects) >= settings.max_objects:
            result.truncated, result.limit = True, f"max_objects={settings.max_objects}"
            break
        modified = blob.last_modified
        result.objects.append(
            {
                "key": blob.name,
                "size": blob.size,
                "last_modified": modified.isoformat() if modified else None,
            }
        )
    return result


async def _get(settings: AzureBlobSettings, container: Any, call: ObjectCall) -> ObjectResult:
    downloader = await container.download_blob(call.key, max_concurrency=1)
    properties = downloader.properties
    result = ObjectResult(
        call.operation,
        call.bucket,
        key=call.key,
        size=int(downloader.size or 0),
        content_type=properties.content_settings.content_type,
    )
    data = bytearray()
    async for chunk in downloader.chunks():
        data.extend(chunk)
        if len(data) > settings.max_bytes:
            break  # later chunks are never asked for
    if len(data) > settings.max_bytes:
        del data[settings.max_bytes :]
        result.truncated, result.limit = True, f"max_bytes={settings.max_bytes}"
    result.set_content(bytes(data))
    return result


async def _put(container: Any, call: ObjectCall) -> ObjectResult:
    assert call.content is not None
    settings = ContentSettings(content_type=call.content_type) if call.content_type else None
    answer = await container.get_blob_client(call.key).upload_blob(
        call.content, overwrite=True, content_settings=settings
    )
    etag = answer.get("etag")
    return ObjectResult(
        call.operation,
        call.bucket,
        key=call.key,
        size=len(call.content),
        etag=str(etag).strip('"') if etag else None,
    )
