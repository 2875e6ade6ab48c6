"""Digests as OPA's bundle/hash.go computes them: canonical JSON for data.json/.manifest."""

from __future__ import annotations

import hashlib

from policy.bundle_hash import file_digest


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_json_files_hash_their_canonical_form() -> None:
    written = b'{ "b": [1, 2.50, {"y": null, "x": true}],\n  "a": "<tag> & \xc3\xa9" }'
    assert file_digest("data.json", written) == sha(
        '{"a":"<tag> & é","b":[1,2.50,{"x":true,"y":null}]}'
    )


def test_whitespace_and_key_order_do_not_matter_but_number_spelling_does() -> None:
    assert file_digest("data.json", b'{"a":1,"b":2}') == file_digest(
        "data.json", b'{ "b" : 2 ,\n"a":1 }'
    )
    assert file_digest("data.json", b'{"a":1}') != file_digest("data.json", b'{"a":1.0}')
    assert file_digest(".manifest", b'{"revision":"1"}') == sha('{"revision":"1"}')


def test_strings_are_escaped_as_go_does() -> None:
    assert file_digest("data.json", b'["\\u2028", "\\u0001", "\\n", "\\/"]') == sha(
        '["\\u2028","\\u0001","\\n","/"]'
    )
    assert file_digest("data.json", b'["\\ud800"]') == sha('["\ufffd"]')


def test_other_files_hash_their_raw_bytes() -> None:
    rego = b"package kaizen.abac.x\n"
    assert file_digest("kaizen/abac/x/policy.rego", rego) == hashlib.sha256(rego).hexdigest()
