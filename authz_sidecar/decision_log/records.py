"""Decision records on the wire and on disk: masking at source, the NDJSON line, the check
that a stored line is a record, and the ingest request body (gzip-compressed or plain)."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

MASK = "***"
# zlib level 1: decision batches several times smaller for a few µs of CPU per record; higher levels
# cost several times the CPU for a few per cent less.
GZIP_LEVEL = 1


def mask_value(value: Any, path: Sequence[str]) -> Any:
    """`value` with `path` replaced by MASK; containers on the path are copied, not mutated."""
    if not path:
        return MASK
    if isinstance(value, dict):
        key = path[0]
        hits = [k for k in value if k == key or (isinstance(k, str) and k.lower() == key)]
        if not hits:
            return value
        copy = dict(value)
        for hit in hits:
            copy[hit] = mask_value(value[hit], path[1:])
        return copy
    if isinstance(value, list):
        return [mask_value(item, path) for item in value]
    return value


def parse_mask(paths: Sequence[str]) -> list[tuple[str, ...]]:
    parsed = []
    for path in paths:
        parts = tuple(part.lower() for part in path.split("."))
        if not path or any(not part for part in parts):
            raise ValueError(
                f"mask path {path!r} must be dotted names, e.g. input.tool.arguments.x"
            )
        parsed.append(parts)
    return parsed


def encode_line(record: dict[str, Any], masks: Sequence[tuple[str, ...]]) -> bytes:
    """The masked NDJSON line for `record` (the caller's dict is left as it was), by
    orjson: UTF-8, and NaN or infinity from a caller's JSON as null, so that ingest
    stores the decision instead of refusing it. What orjson cannot encode (integers past
    64 bits, lone surrogates) the standard encoder writes, and ingest accepts or refuses
    by name."""
    for path in masks:
        record = mask_value(record, path)
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(_finite(record), separators=(",", ":")).encode() + b"\n"


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None, as orjson writes them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def is_record(line: bytes) -> bool:
    """Whether `line` (ending in a newline) has a record's shape: a JSON object's braces.

    This process writes each line whole with one `os.write` (a crash leaves a torn line
    without its newline, which the reader drops), so a complete line is a record unless
    the disk damaged it, which shows as NULs: at the start of a line this refuses it here;
    inside one, ingest refuses the batch as not JSON and the shipper sends its records one
    by one and keeps the refused one aside. Parsing every line to be sure cost more CPU
    than the rest of reading and compressing a batch, on the thread that shares the GIL
    with every check."""
    return line[:1] == b"{" and line[-2:] == b"}\n"


def body(lines: Sequence[bytes], *, compress: bool) -> bytes:
    """The `/api/v1/decisions/ingest` body of `lines`; gzip when `compress` (sent with
    `Content-Encoding: gzip`)."""
    plain = b'{"decisions":[' + b",".join(lines) + b"]}"
    if not compress:
        return plain
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip container
    return packer.compress(plain) + packer.flush()
