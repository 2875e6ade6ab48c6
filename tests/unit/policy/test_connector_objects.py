"""What an object call names (policy/connectors/objects.py): one object a policy can judge,
or a refusal — never a key a client or the store would read as another object — and the
object-store settings, each bad one a ValueError naming its field."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from policy.connectors.objects import ObjectCall, ObjectRefused, S3Settings
from policy.connectors.registry import endpoint_url, settings_from_dict


def test_a_call_names_its_object_and_a_puts_content_hash() -> None:
    get = ObjectCall.parse("objects.get", {"bucket": "docs", "key": "reports/q1.txt"})
    assert (get.action, get.object) == ("read", "docs/reports/q1.txt")
    assert get.check_body() == {"bucket": "docs", "key": "reports/q1.txt"}
    listed = ObjectCall.parse("objects.list", {"bucket": "docs"})
    assert (listed.object, listed.check_body()) == ("docs/", {"bucket": "docs", "prefix": ""})
    put = ObjectCall.parse("objects.put", {"bucket": "inbox", "key": "a", "content_base64": "AAE="})
    assert (put.action, put.content) == ("write", b"\x00\x01")
    assert put.check_body()["sha256"] == hashlib.sha256(b"\x00\x01").hexdigest()


@pytest.mark.parametrize(
    ("operation", "arguments", "why"),
    [
        ("objects.get", {"bucket": "docs", "key": "reports/../secret"}, "'..'"),
        ("objects.get", {"bucket": "docs", "key": "reports/./q1.txt"}, "'.'"),
        ("objects.get", {"bucket": "docs", "key": ".."}, "'..'"),
        ("objects.list", {"bucket": "docs", "prefix": "reports/.."}, "'..'"),
        ("objects.get", {"bucket": "docs", "key": "reports\\q1.txt"}, "backslashes"),
        ("objects.get", {"bucket": "docs", "key": "a\x00b"}, "control"),
        ("objects.get", {"bucket": "docs", "key": "/reports/q1.txt"}, "'/'"),
        ("objects.get", {"bucket": "docs", "key": "reports//q1.txt"}, "'//'"),
        ("objects.get", {"bucket": "docs", "key": "k" * 1025}, "1024"),
        ("objects.get", {"bucket": "docs", "key": ""}, "non-empty"),
        ("objects.get", {"bucket": "docs/x", "key": "a"}, "bucket"),
        ("objects.get", {"bucket": "DOCS", "key": "a"}, "bucket"),
        ("objects.delete", {"bucket": "docs", "key": "a"}, "operation"),
        ("objects.put", {"bucket": "docs", "key": "a"}, "exactly one"),
        ("objects.put", {"bucket": "docs", "key": "a", "content": "x", "content_base64": "eA=="},
         "exactly one"),
        ("objects.put", {"bucket": "docs", "key": "a", "content_base64": "not base64!"}, "base64"),
        ("objects.put", {"bucket": "docs", "key": "a", "content": "x", "content_type": "a\nb"},
         "content_type"),
    ],
)  # fmt: skip
def test_what_could_name_another_object_is_refused(
    operation: str, arguments: dict[str, Any], why: str
) -> None:
    with pytest.raises(ObjectRefused, match=why):
        ObjectCall.parse(operation, arguments)


def test_settings_fill_their_defaults_and_name_the_endpoint_the_guard_judges() -> None:
    s3 = settings_from_dict({"type": "s3", "access_key_id": "AKIA1", "region": "eu-west-1"})
    assert isinstance(s3, S3Settings)
    assert endpoint_url(s3) == "https://s3.eu-west-1.amazonaws.com"
    azure = settings_from_dict({"type": "azure_blob", "account_name": "acct"})
    assert endpoint_url(azure) == "https://acct.blob.core.windows.net"
    assert settings_from_dict(s3.to_dict()) == s3, "the stored form round-trips"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "s3", "access_key_id": "AKIA1", "endpoint_url": "http://u@h/"}, "endpoint_url"),
        ({"type": "s3", "access_key_id": "AKIA1", "endpoint_url": "ftp://h/"}, "endpoint_url"),
        ({"type": "s3", "access_key_id": "AKIA1", "endpoint_url": "http://h/?a=1"}, "endpoint_url"),
        ({"type": "s3", "access_key_id": "AKIA1", "region": "EU"}, "region"),
        ({"type": "s3", "access_key_id": "a b"}, "access_key_id"),
        ({"type": "s3"}, "access_key_id"),
        ({"type": "s3", "access_key_id": "A", "buckets": ["Bad"]}, "buckets"),
        ({"type": "s3", "access_key_id": "A", "buckets": "docs"}, "buckets"),
        ({"type": "s3", "access_key_id": "A", "max_bytes": 0}, "max_bytes"),
        ({"type": "s3", "access_key_id": "A", "max_objects": True}, "max_objects"),
        ({"type": "s3", "access_key_id": "A", "host": "h"}, "host"),
        ({"type": "azure_blob", "account_name": "A"}, "account_name"),
        ({"type": "azure_blob", "account_name": "acct", "account_url": "http://[::1"},
         "account_url"),
        ({"type": "gcs"}, "type"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        settings_from_dict(raw)
