"""ABAC: the tenant's Rego modules yield `deny` and `require_approval` reason sets.

`RegoEvaluator` is the engine's seam; `EmbeddedRegoEvaluator` (regopy, compiled once,
queried through one entrypoint) is its one implementation (an external OPA server was
one too; ADR 0006 says why it went). An evaluator never raises for a bad policy or input:
it returns an `AbacResult` with `error` set, and the engine turns that into a deny.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from regopy.node import Node

# The low-level calls let us read the output text ourselves and always free it: the
# high-level `Output` raises on some error outputs before it owns the pointer, and
# `Output.expressions()` on an undefined result aborts the process.
from regopy.rego_shared import (
    RegoError,
    rego_bundle_query_entrypoint,
    rego_free_output,
    rego_output_node,
    rego_output_ok,
    rego_output_string,
    rego_set_input_term,
)

from policy.compile.rego_compile import AGGREGATE_ENTRYPOINT, compile_rego, parse_errors
from policy.compile.rego_lint import token_list

Reasons = tuple[tuple[str, str], ...]  # (package, reason)


@dataclass(frozen=True, slots=True)
class AbacResult:
    deny: Reasons = ()
    require_approval: Reasons = ()
    error: str | None = None


class RegoEvaluator(Protocol):
    def evaluate(self, input: Mapping[str, Any]) -> AbacResult: ...

    def close(self) -> None: ...


def reasons_from(value: object, rule: str) -> Reasons:
    """`[[package, reason], ...]` → pairs; anything else is a policy bug we must not allow."""
    if not isinstance(value, list):
        raise TypeError(f"{rule} is not a set")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)):
            package = item[0] if isinstance(item, list) and item else "?"
            raise TypeError(f"{rule} of {package} holds a non-string")
        out.append((str(item[0]), item[1]))
    return tuple(sorted(out))


def referenced_data(modules: Iterable[str], data: Mapping[str, Any]) -> dict[str, Any]:
    """The `data.kaizen.<key>` subtrees the modules can reach; all data when unsure.

    rego-cpp takes seconds to ingest 10,000 bindings it will never read (they are for
    RBAC, which does not run in Rego), so the embedded engine gets only what is referenced.
    """
    keys: set[str] = set()
    for source in modules:
        toks = token_list(source)
        for i, token in enumerate(toks):
            if token.text != "data" or token.kind != "ident" or (i and toks[i - 1].text == "."):
                continue
            path = []
            j = i + 1
            while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "ident":
                path.append(toks[j + 1].text)
                j += 2
            if path[:1] not in ([], ["kaizen"]):
                continue  # another root: nothing of ours
            if len(path) < 2:
                return dict(data)  # `data`, `data[x]`, `data.kaizen`: could reach anything
            keys.add(path[1])
    kaizen = data.get("kaizen", {})
    return {"kaizen": {key: kaizen[key] for key in sorted(keys) if key in kaizen}}


class EmbeddedRegoEvaluator:
    def __init__(self, modules: Mapping[str, str], data: Mapping[str, Any] | None = None) -> None:
        reachable = referenced_data(modules.values(), data) if data is not None else None
        data_json = json.dumps(reachable, sort_keys=True) if reachable is not None else None
        compiled = compile_rego(modules, data_json)
        self.packages = compiled.packages
        self._interpreter = compiled.interpreter
        self._bundle = compiled.bundle
        # One rego-cpp interpreter holds one input at a time.
        self._lock = threading.Lock()

    def evaluate(self, input: Mapping[str, Any]) -> AbacResult:
        try:
            term = json.dumps(input, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return AbacResult(error=f"input is not JSON: {exc}")
        try:
            with self._lock:
                ok, text, errors = self._query(term)
        except RegoError as exc:
            return AbacResult(error=_first_message(str(exc)))
        if not ok:
            return AbacResult(error=errors or "Rego evaluation failed")
        try:
            parsed = json.loads(text)
            result = parsed["expressions"][0]
            return AbacResult(
                deny=reasons_from(result["deny"], "deny"),
                require_approval=reasons_from(result["require_approval"], "require_approval"),
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            # rego-cpp reports some errors (e.g. an unknown function) as an "ok" output
            # whose text is an error s-expression rather than JSON.
            message = _first_message(text) if text.lstrip().startswith("(") else str(exc)
            return AbacResult(error=message)

    def _query(self, term: str) -> tuple[bool, str, str]:
        rego_set_input_term(self._interpreter._impl, term)
        output = rego_bundle_query_entrypoint(
            self._interpreter._impl, self._bundle._impl, AGGREGATE_ENTRYPOINT
        )
        try:
            ok = bool(rego_output_ok(output))
            text = str(rego_output_string(output))
            errors = "" if ok else _error_messages(output)
            return ok, text, errors
        finally:
            rego_free_output(output)

    def close(self) -> None:
        """Nothing to release early; the interpreter is freed with the evaluator."""


def _error_messages(output: Any) -> str:
    node = Node(rego_output_node(output))
    texts = [node.at(i).json() for i in range(len(node))]
    return "; ".join(p.message for p in parse_errors("\n".join(texts), {}))


def _first_message(text: str) -> str:
    return parse_errors(text, {})[0].message
