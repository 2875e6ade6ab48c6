"""Digests as OPA's bundle/hash.go computes them: canonical JSON for data.json/.manifest."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.bundles.bundle_hash import canonical_json_text, file_digest


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


class Literal(str):
    """A JSON number as written."""


def reference_canonical(value: Any) -> str:
    """hash.go's walk, written out plainly (recursive, one value at a time)."""
    if isinstance(value, dict):
        items = (f"{reference_canonical(k)}:{reference_canonical(value[k])}" for k in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(reference_canonical(v) for v in value) + "]"
    if isinstance(value, Literal):
        return str(value)
    if isinstance(value, str):
        text = json.dumps(
            value.encode("utf-16", "surrogatepass").decode("utf-16", "replace"), ensure_ascii=False
        )
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return json.dumps(value)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from([None, 1, 4]), st.booleans())
def test_canonical_text_matches_the_reference_walk(
    value: Any, indent: int | None, ascii_only: bool
) -> None:
    written = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    parsed = json.loads(written, parse_int=Literal, parse_float=Literal)
    assert canonical_json_text(written) == reference_canonical(parsed)
