"""File digests exactly as OPA computes them for `.signatures.json` (v1/bundle/hash.go).

`data.json` and `.manifest` are parsed and hashed in a canonical form: object keys sorted
(Go compares UTF-8 bytes, which orders like code points), no whitespace, strings encoded
as Go's encoding/json does with HTML escaping off, and numbers written exactly as they
appear in the file (Go decodes them as json.Number). Every other file is hashed raw.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

ALGORITHM = "SHA-256"
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_structured(name: str) -> bool:
    return name.rsplit("/", 1)[-1] == "data.json" or name.endswith(".manifest")


def file_digest(name: str, content: bytes) -> str:
    """Hex SHA-256 of a bundle file; raises ValueError (or RecursionError) for bad JSON."""
    if not is_structured(name):
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha256(canonical_json_text(content).encode()).hexdigest()


def canonical_json_text(content: bytes) -> str:
    # Numbers become placeholder strings while the C encoder does the rest, then get their
    # original spelling back; the random tag keeps real strings from posing as one.
    tag = secrets.token_hex(8)
    numbers: list[str] = []

    def keep(literal: str) -> str:
        numbers.append(literal)
        return f"\x00{tag}{len(numbers) - 1}\x00"

    value = json.loads(content, parse_int=keep, parse_float=keep, parse_constant=_reject)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go writes invalid UTF-16 as U+FFFD and escapes U+2028/U+2029 even without HTML
    # escaping; Python does neither. Both can only occur inside strings. Other escapes
    # (\n, \b, \f, \u00XX for control characters) agree since Go 1.22.
    text = _SURROGATE.sub("\ufffd", text).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    placeholder = re.compile(rf'"\\u0000{tag}(\d+)\\u0000"')
    return placeholder.sub(lambda match: numbers[int(match.group(1))], text)


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
