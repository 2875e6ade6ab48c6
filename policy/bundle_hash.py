"""File digests exactly as OPA computes them for `.signatures.json` (v1/bundle/hash.go).

`data.json` and `.manifest` are parsed and hashed in a canonical form: object keys sorted,
no whitespace, strings encoded as Go's encoding/json does with HTML escaping off, and
numbers written exactly as they appear in the file (Go decodes them as json.Number).
Every other file is hashed over its raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

ALGORITHM = "SHA-256"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class _Number:
    literal: str


def is_structured(name: str) -> bool:
    return name.rsplit("/", 1)[-1] == "data.json" or name.endswith(".manifest")


def file_digest(name: str, content: bytes) -> str:
    """Hex SHA-256 of a bundle file; raises ValueError for malformed JSON."""
    if not is_structured(name):
        return hashlib.sha256(content).hexdigest()
    value = json.loads(content, parse_int=_Number, parse_float=_Number, parse_constant=_reject)
    hasher = hashlib.sha256()
    for chunk in _canonical(value):
        hasher.update(chunk.encode())
    return hasher.hexdigest()


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _canonical(value: Any) -> list[str]:
    """Canonical text in pieces, iteratively, so deep nesting cannot exhaust the stack."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Literal):
            out.append(item.text)
        elif isinstance(item, dict):
            parts: list[Any] = [_Literal("{")]
            for i, key in enumerate(sorted(item)):
                if i:
                    parts.append(_Literal(","))
                parts.extend((_Literal(_string(key) + ":"), item[key]))
            parts.append(_Literal("}"))
            stack.extend(reversed(parts))
        elif isinstance(item, list):
            parts = [_Literal("[")]
            for i, element in enumerate(item):
                if i:
                    parts.append(_Literal(","))
                parts.append(element)
            parts.append(_Literal("]"))
            stack.extend(reversed(parts))
        else:
            out.append(_primitive(item))
    return out


@dataclass(frozen=True, slots=True)
class _Literal:
    text: str


def _primitive(value: Any) -> str:
    if isinstance(value, _Number):
        return value.literal
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"unexpected JSON value {value!r}")


def _string(text: str) -> str:
    # Go writes invalid UTF-16 as U+FFFD and escapes U+2028/U+2029 even without HTML
    # escaping; Python does neither. Short escapes (\n, \b, \f, ...) agree since Go 1.22.
    encoded = json.dumps(_SURROGATE.sub("\ufffd", text), ensure_ascii=False)
    return encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
