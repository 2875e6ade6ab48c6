"""Typed field access over a raw document that records every problem with its location."""

from __future__ import annotations

import re
from collections.abc import Collection

from policy.documents.source import Path, RawDocument, dotted
from policy.errors import ErrorDetail

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_HINT = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128"


class FieldReader:
    def __init__(self, raw: RawDocument) -> None:
        self.raw = raw
        self.details: list[ErrorDetail] = []

    def error(self, path: Path, message: str) -> None:
        self.details.append(detail_at(self.raw, path, message))

    def mapping(
        self,
        value: object,
        path: Path,
        *,
        required: Collection[str] = (),
        optional: Collection[str] = (),
    ) -> dict[str, object] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_type_name(value)}")
            return None
        for key in value:
            if key not in required and key not in optional:
                allowed = ", ".join(sorted({*required, *optional}))
                self.error((*path, key), f"unknown field {key!r} (expected one of: {allowed})")
        for key in required:
            if key not in value:
                self.error(path, f"missing required field {key!r}")
        return value

    def sequence(self, value: object, path: Path) -> list[object] | None:
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_type_name(value)}")
            return None
        return value

    def string(
        self, value: object, path: Path, *, pattern: re.Pattern[str] | None = None, hint: str = ""
    ) -> str | None:
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {_type_name(value)}")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.error(path, f"invalid value {value!r}" + (f": {hint}" if hint else ""))
            return None
        return value

    def name(self, value: object, path: Path) -> str | None:
        return self.string(value, path, pattern=NAME, hint=NAME_HINT)

    def strings(
        self, value: object, path: Path, *, pattern: re.Pattern[str] | None = None, hint: str = ""
    ) -> tuple[str, ...]:
        items = self.sequence(value, path)
        if items is None:
            return ()
        out = []
        for i, item in enumerate(items):
            text = self.string(item, (*path, i), pattern=pattern, hint=hint)
            if text is not None:
                out.append(text)
        return tuple(out)

    def number(self, value: object, path: Path, *, minimum: float | None = None) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"expected a number, got {_type_name(value)}")
            return None
        if minimum is not None and value < minimum:
            self.error(path, f"must be at least {minimum:g}, got {value:g}")
            return None
        return value

    def choice(self, value: object, path: Path, choices: Collection[str]) -> str | None:
        text = self.string(value, path)
        if text is not None and text not in choices:
            self.error(path, f"must be one of {', '.join(sorted(choices))}, got {text!r}")
            return None
        return text


def detail_at(raw: RawDocument, path: Path, message: str) -> ErrorDetail:
    position = raw.locate(path)
    return ErrorDetail(
        file=raw.file,
        document=raw.index,
        field=dotted(path) or None,
        line=position.line if position else None,
        column=position.column if position else None,
        message=message,
    )


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
