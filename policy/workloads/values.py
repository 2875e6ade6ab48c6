"""Field readers shared by agent and pipeline specs: limits, budget, JSON Schemas, numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jsonschema

from policy.documents.fields import FieldReader
from policy.documents.source import Path
from policy.workloads.config import CallBudget, Limits

MAX_TIMEOUT_SECONDS = 3600
MAX_STEPS = 1000
MAX_TOKENS_PER_CALL = 100_000_000


def read_limits(reader: FieldReader, value: object, path: Path) -> Limits:
    if value is None:
        return Limits()
    raw = reader.mapping(value, path, optional=("max_steps", "timeout_seconds", "max_cost_usd"))
    if raw is None:
        return Limits()
    default = Limits()
    steps = default.max_steps
    if "max_steps" in raw:
        steps = read_int(reader, raw["max_steps"], (*path, "max_steps"), 1, MAX_STEPS) or steps
    timeout = default.timeout_seconds
    if "timeout_seconds" in raw:
        timeout = read_number(reader, raw["timeout_seconds"], (*path, "timeout_seconds")) or timeout
        if timeout > MAX_TIMEOUT_SECONDS:
            reader.error((*path, "timeout_seconds"), f"must be at most {MAX_TIMEOUT_SECONDS}")
        if timeout <= 0:
            timeout = default.timeout_seconds
            reader.error((*path, "timeout_seconds"), "must be greater than 0")
    cost = default.max_cost_usd
    if "max_cost_usd" in raw:
        number = read_number(reader, raw["max_cost_usd"], (*path, "max_cost_usd"))
        cost = default.max_cost_usd if number is None else number
    return Limits(steps, float(timeout), float(cost))


def read_budget(reader: FieldReader, value: object, path: Path, *, priced: bool) -> CallBudget:
    if value is None:
        return CallBudget()
    fields = ("max_cost_usd_per_call", "max_tokens", *(("price_per_1m_tokens",) if priced else ()))
    raw = reader.mapping(value, path, optional=fields)
    if raw is None:
        return CallBudget()
    cost = None
    if "max_cost_usd_per_call" in raw:
        cost = read_number(reader, raw["max_cost_usd_per_call"], (*path, "max_cost_usd_per_call"))
        if cost is not None and cost <= 0:
            reader.error((*path, "max_cost_usd_per_call"), "must be greater than 0")
            cost = None
    tokens = None
    if "max_tokens" in raw:
        tokens = read_int(reader, raw["max_tokens"], (*path, "max_tokens"), 1, MAX_TOKENS_PER_CALL)
    price = None
    if "price_per_1m_tokens" in raw:
        ppath = (*path, "price_per_1m_tokens")
        pair = reader.mapping(raw["price_per_1m_tokens"], ppath, required=("input", "output"))
        if pair is not None and "input" in pair and "output" in pair:
            price_in = read_number(reader, pair["input"], (*ppath, "input"))
            price_out = read_number(reader, pair["output"], (*ppath, "output"))
            if price_in is not None and price_out is not None:
                price = (price_in, price_out)
    return CallBudget(cost, tokens, price)


def read_schema(
    reader: FieldReader, parent: Mapping[str, object], path: Path
) -> Mapping[str, Any] | None:
    value = parent.get(str(path[-1]))
    if value is None:
        return None
    if not isinstance(value, dict | bool):
        reader.error(path, "expected a JSON Schema (a mapping)")
        return None
    if isinstance(value, bool):
        return {} if value else {"not": {}}
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        where = (*path, *(str(p) if not isinstance(p, int) else p for p in exc.path))
        reader.error(where, f"invalid JSON Schema: {exc.message}")
        return None
    return value


def read_int(
    reader: FieldReader, value: object, path: Path, minimum: int, maximum: int
) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        reader.error(path, "expected an integer")
        return None
    if not minimum <= value <= maximum:
        reader.error(path, f"must be between {minimum} and {maximum}, got {value}")
        return None
    return value


def read_number(reader: FieldReader, value: object, path: Path) -> float | None:
    number = reader.number(value, path, minimum=0)
    if number is not None and not math.isfinite(number):
        reader.error(path, "must be finite")
        return None
    return None if number is None else float(number)


def read_optional_string(
    reader: FieldReader, parent: Mapping[str, object], path: Path
) -> str | None:
    value = parent.get(str(path[-1]))
    return None if value is None else reader.string(value, path)
