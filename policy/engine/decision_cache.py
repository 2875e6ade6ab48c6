"""Caches for the pure parts of a decision (RBAC and ABAC), owned by one engine.

A new bundle means a new engine and so empty caches. The ABAC cache key is the part of
the input the Rego modules can read: every `input.a.b` reference found in their source
(a subtree when followed by `[`). Requests then share entries even though their time,
source IP or request id differ. A module that reads `input` as a whole, or that calls a
non-deterministic built-in (time.now_ns, rand, http.send, …), gets no ABAC cache.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from policy.compile.rego_lint import token_list

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

NON_DETERMINISTIC = ("time.now_ns", "rand.", "uuid.", "http.send", "opa.runtime", "net.lookup")
_MISSING = object()
_MISSING_KEY = ("missing",)


class LruCache(Generic[K, V]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        # Another thread may have evicted the key in between; the value is still right.
        with contextlib.suppress(KeyError):
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.maxsize <= 0:
            return
        self._data[key] = value
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class InputProjection:
    """The input paths a set of Rego modules reads, turned into a hashable key."""

    def __init__(self, paths: Iterable[tuple[str, ...]]) -> None:
        # Drop paths inside another path: the subtree already covers them.
        ordered = sorted(set(paths))
        kept: list[tuple[str, ...]] = []
        for path in ordered:
            if not any(path[: len(k)] == k for k in kept):
                kept.append(path)
        self.paths = tuple(kept)

    @classmethod
    def from_modules(cls, sources: Iterable[str]) -> InputProjection | None:
        """None when the modules must not be cached by projection (see module docstring)."""
        paths: list[tuple[str, ...]] = []
        for source in sources:
            if any(marker in source for marker in NON_DETERMINISTIC):
                return None
            toks = token_list(source)
            for i, token in enumerate(toks):
                if token.text != "input" or token.kind != "ident":
                    continue
                if i and toks[i - 1].text == ".":
                    continue
                path: list[str] = []
                j = i + 1
                while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "ident":
                    path.append(toks[j + 1].text)
                    j += 2
                if not path:
                    return None  # `input` itself, `input[...]`, `object.get(input, ...)`
                paths.append(tuple(path))
        return cls(paths)

    def key(self, value: Mapping[str, Any]) -> tuple[Hashable, ...]:
        parts: list[Hashable] = []
        for path in self.paths:
            node: Any = value
            for segment in path:
                if type(node) is dict and segment in node:
                    node = node[segment]
                else:
                    node = _MISSING
                    break
            parts.append(_freeze(node))
        return tuple(parts)


def _freeze(node: Any) -> Hashable:
    # Tagged so that values Rego tells apart stay apart in the key (in Python
    # True == 1 == 1.0); containers are unhashable and go through JSON.
    kind = type(node)
    if kind is str:
        return str(node)
    if kind in (int, float, bool) or node is None:
        return (kind.__name__, node)
    if node is _MISSING:
        return _MISSING_KEY
    return ("json", json.dumps(node, sort_keys=True, separators=(",", ":")))


def full_input_key(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
