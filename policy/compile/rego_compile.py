"""Compile a tenant's Rego modules once with regopy (rego-cpp), in compiled mode.

Every module lives under `data.kaizen.abac…` and may define `deny` and `require_approval`
sets of strings. A generated aggregator module collects them with comprehensions, which
are empty (not undefined) when a package lacks one of the rules, and exposes one
entrypoint, so a decision is a single `query_bundle_entrypoint` call. The aggregator only
exists inside the embedded engine; it is never written to a bundle.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import regopy
from regopy import Bundle, Interpreter, LogLevel

from policy.compile.rego_lint import RegoProblem, lint_modules
from policy.errors import PolicyError

ABAC_PACKAGE = "kaizen.abac"
RESERVED_SEGMENTS = frozenset({"deny", "require_approval"})
AGGREGATE_MODULE = "kaizen_engine/aggregate.rego"
AGGREGATE_ENTRYPOINT = "kaizen_engine/aggregate/result"

_PACKAGE_LINE = re.compile(r"package\s+(?P<ref>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*(?:#.*)?")
_LENGTH_PREFIX = re.compile(rb"(\d+):")
_ERROR_START = re.compile(rb"\(error(?=\s)")


class RegoCompileError(PolicyError):
    def __init__(self, problems: list[RegoProblem]) -> None:
        self.problems = problems
        first = problems[0]
        where = f"{first.module}:{first.line}:{first.column}: " if first.line else ""
        super().__init__(f"{where}{first.message}")


@dataclass(frozen=True)
class CompiledRego:
    interpreter: Interpreter
    bundle: Bundle
    packages: tuple[str, ...]


def new_interpreter() -> Interpreter:
    interpreter = Interpreter()
    # rego-cpp prints compile errors to stdout unless told not to; we report them ourselves.
    interpreter.log_level = LogLevel.NONE
    # A built-in error must surface as an error (→ deny), not as a silently undefined rule.
    interpreter.strict_built_in_errors = True
    return interpreter


_builtin_probe_lock = threading.Lock()
_builtin_probe: Interpreter | None = None


def is_builtin(name: str) -> bool:
    global _builtin_probe
    with _builtin_probe_lock:
        if _builtin_probe is None:
            _builtin_probe = new_interpreter()
        return bool(_builtin_probe.is_builtin(name))


def module_path(document_name: str) -> str:
    """Where a RegoPolicy lives in a bundle; also its module name in every error message."""
    return f"kaizen/abac/{document_name}/policy.rego"


def read_package(source: str) -> str | None:
    """The module's package: the first line that is neither blank nor a comment."""
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _PACKAGE_LINE.fullmatch(stripped)
        return match.group("ref") if match else None
    return None


def package_problem(package: str | None) -> str | None:
    if package is None:
        return "the Rego text must start with `package kaizen.abac…`"
    if package != ABAC_PACKAGE and not package.startswith(ABAC_PACKAGE + "."):
        return f"package {package} is outside {ABAC_PACKAGE}; use {ABAC_PACKAGE}.<name>"
    segments = package.split(".")[2:]
    if RESERVED_SEGMENTS.intersection(segments):
        return "package names may not contain the segments deny or require_approval"
    return None


def aggregate_module(packages: Iterable[str]) -> str:
    lines = [f"package {AGGREGATE_ENTRYPOINT.rsplit('/', 1)[0].replace('/', '.')}"]
    lines.append("import rego.v1")
    for package in sorted(set(packages)):
        for rule in ("deny", "require_approval"):
            lines.append(f'{rule} contains ["{package}", r] if some r in data.{package}.{rule}')
    lines.append('result := {"deny": deny, "require_approval": require_approval}')
    return "\n".join(lines) + "\n"


def check_modules(modules: Mapping[str, str]) -> list[RegoProblem]:
    """Every problem we can find without evaluating: package, syntax, unknown calls.

    The modules compile together, once; only when that fails is each compiled alone, so
    that every problem is reported against the module that has it (a conflict between
    modules that each compile alone is reported as the combined compile found it)."""
    problems: list[RegoProblem] = []
    for name, source in sorted(modules.items()):
        message = package_problem(read_package(source))
        if message:
            problems.append(RegoProblem(name, _package_line(source), 1, message))
    if problems:
        return problems
    try:
        compile_rego(modules)
    except RegoCompileError as combined:
        if len(modules) > 1:
            for name, source in sorted(modules.items()):
                try:
                    compile_rego({name: source})
                except RegoCompileError as alone:
                    problems.extend(alone.problems)
        if not problems:  # each compiles alone: the conflict is between them
            problems.extend(combined.problems)
    problems.extend(lint_modules(modules, is_builtin))
    return problems


def compile_rego(modules: Mapping[str, str], data_json: str | None = None) -> CompiledRego:
    packages = tuple(sorted({read_package(source) or "" for source in modules.values()}))
    if not modules or "" in packages:
        raise RegoCompileError([RegoProblem(None, None, None, "no Rego package to compile")])
    interpreter = new_interpreter()
    try:
        for name, source in sorted(modules.items()):
            interpreter.add_module(name, source)
        interpreter.add_module(AGGREGATE_MODULE, aggregate_module(packages))
        if data_json is not None:
            interpreter.add_data_json(data_json)
        bundle = interpreter.build(None, [AGGREGATE_ENTRYPOINT])
    except regopy.RegoError as exc:
        raise RegoCompileError(parse_errors(str(exc), modules)) from None
    # Never query a bundle that is not ok: rego-cpp crashes the process if we do.
    if not bundle.ok():
        raise RegoCompileError(parse_errors(_bundle_error_text(bundle), modules))
    return CompiledRego(interpreter, bundle, packages)


def _bundle_error_text(bundle: Bundle) -> str:
    node = bundle.node()
    parts = []
    try:
        for i in range(len(node)):
            parts.append(node.at(i).json())
    except (regopy.RegoError, IndexError, TypeError):
        pass
    return "\n".join(parts)


def parse_errors(text: str, modules: Mapping[str, str]) -> list[RegoProblem]:
    """rego-cpp's error s-expressions → problems with module, line and column."""
    raw = text.encode()
    problems = []
    for block in _ERROR_START.split(raw)[1:]:
        message = _length_prefixed_after(block, b"(errormsg ") or "Rego does not compile"
        module, line, column = _location(block, modules)
        problems.append(RegoProblem(module, line, column, message))
    return problems or [RegoProblem(None, None, None, "Rego does not compile")]


def _length_prefixed_after(block: bytes, marker: bytes) -> str | None:
    start = block.find(marker)
    if start < 0:
        return None
    match = _LENGTH_PREFIX.match(block, start + len(marker))
    if not match:
        return None
    end = match.end() + int(match.group(1))
    return block[match.end() : end].decode(errors="replace")


def _location(
    block: bytes, modules: Mapping[str, str]
) -> tuple[str | None, int | None, int | None]:
    for match in _LENGTH_PREFIX.finditer(block):
        end = match.end() + int(match.group(1))
        name = block[match.end() : end].decode(errors="replace")
        offset = re.match(rb"\|(\d+)\|", block[end:])
        if name in modules and offset:
            source = modules[name].encode()
            position = min(int(offset.group(1)), len(source))
            line_start = source.rfind(b"\n", 0, position) + 1
            column = len(source[line_start:position].decode(errors="replace")) + 1
            return name, source.count(b"\n", 0, position) + 1, column
    return None, None, None


def _package_line(source: str) -> int:
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() and not line.strip().startswith("#"):
            return number
    return 1
