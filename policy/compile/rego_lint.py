"""Static checks the embedded engine (rego-cpp) does not make at compile time.

rego-cpp accepts a module that calls a function it does not have (`net.cidr_contains`,
`http.send`, a typo) and only fails when the call is reached, which would turn a policy
typo into a deny at 3 a.m. It also accepts Rego v0 rule bodies (`allow { ... }`) that a
stock OPA 1.x rejects, so a bundle would load here and fail there. A small tokenizer is
enough to find both; it errs on the side of silence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

KEYWORDS = frozenset(
    {"package", "import", "as", "default", "if", "else", "contains", "in", "not", "some"}
    | {"every", "with", "true", "false", "null"}
)
_ALWAYS_AVAILABLE = frozenset({"print"})
_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<newline>\n)
  | (?P<space>[ \t\r]+)
  | (?P<op>:=|==|!=|<=|>=|[{}\[\]().,;:|=<>+\-*/%&!])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class RegoProblem:
    """A problem in one Rego module; line and column are 1-based within the module text."""

    module: str | None
    line: int | None
    column: int | None
    message: str


@lru_cache(maxsize=512)
def token_list(source: str) -> tuple[Token, ...]:
    """`tokens(source)`, kept by text: a publish lints, projects the decision cache's input
    and finds the data its modules reach from one tokenisation of each module."""
    return tuple(tokens(source))


def tokens(source: str) -> Iterator[Token]:
    line, line_start = 1, 0
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        text = match.group()
        if kind not in ("comment", "space"):
            yield Token(kind, text, line, match.start() - line_start + 1)
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + text.rindex("\n") + 1


def lint_modules(
    modules: Mapping[str, str], is_builtin: Callable[[str], bool]
) -> list[RegoProblem]:
    """Unknown functions and v0-style rule bodies, across every module of a policy set."""
    parsed = {name: _Tokens(list(token_list(source))) for name, source in modules.items()}
    defined = {name for toks in parsed.values() for name in toks.definitions()}
    problems: list[RegoProblem] = []
    for module, toks in parsed.items():
        aliases = toks.import_aliases()
        for name, token in toks.calls():
            root = name.split(".", 1)[0]
            if name in defined or name in _ALWAYS_AVAILABLE or root in ("data", "input"):
                continue
            if root in aliases or name in KEYWORDS or is_builtin(name):
                continue
            problems.append(
                RegoProblem(module, token.line, token.column, f"unknown function {name}")
            )
        problems.extend(
            RegoProblem(module, t.line, t.column, "Rego v1 needs `if` before a rule body")
            for t in toks.v0_bodies()
        )
    return problems


class _Tokens:
    def __init__(self, toks: list[Token]) -> None:
        self.toks = toks
        self.depth: list[int] = []  # bracket depth before each token
        depth = 0
        for token in toks:
            self.depth.append(depth)
            if token.text in ("(", "[", "{"):
                depth += 1
            elif token.text in (")", "]", "}"):
                depth = max(0, depth - 1)

    def dotted_name(self, start: int) -> tuple[str, int]:
        """The dotted reference starting at `start` and the index just after it."""
        toks = self.toks
        parts = [toks[start].text]
        i = start + 1
        while i + 1 < len(toks) and toks[i].text == "." and toks[i + 1].kind == "ident":
            parts.append(toks[i + 1].text)
            i += 2
        return ".".join(parts), i

    def is_statement_start(self, i: int) -> bool:
        """Top level, first token of a line (after an optional `default`)."""
        if self.depth[i] != 0:
            return False
        j = i - 1
        if j >= 0 and self.toks[j].text == "default":
            j -= 1
        return j < 0 or self.toks[j].kind == "newline"

    def calls(self) -> Iterator[tuple[str, Token]]:
        toks = self.toks
        i = 0
        while i < len(toks):
            token = toks[i]
            if token.kind != "ident" or (i and toks[i - 1].text == "."):
                i += 1
                continue
            name, after = self.dotted_name(i)
            is_call = after < len(toks) and toks[after].text == "("
            if is_call and not self.is_statement_start(i):
                yield name, token
            i = after

    def definitions(self) -> Iterator[str]:
        """`f(x) := ...` / `f(x) if ...`: a call shape at the start of a statement."""
        for i, token in enumerate(self.toks):
            if token.kind == "ident" and self.is_statement_start(i):
                name, after = self.dotted_name(i)
                if after < len(self.toks) and self.toks[after].text == "(":
                    yield name

    def import_aliases(self) -> set[str]:
        toks = self.toks
        aliases: set[str] = set()
        for i, token in enumerate(toks):
            if token.text != "import" or i + 1 >= len(toks) or toks[i + 1].kind != "ident":
                continue
            path, after = self.dotted_name(i + 1)
            if after + 1 < len(toks) and toks[after].text == "as":
                aliases.add(toks[after + 1].text)
            elif path.split(".", 1)[0] in ("data", "input"):
                aliases.add(path.rsplit(".", 1)[-1])
        return aliases

    def v0_bodies(self) -> Iterator[Token]:
        """Top-level `{` right after a rule head without `if` (`allow {`, `p[x] {`)."""
        statement_has_every = False
        previous: Token | None = None
        for i, token in enumerate(self.toks):
            if token.kind == "newline":
                if self.depth[i] == 0:
                    statement_has_every = False
                continue
            statement_has_every = statement_has_every or token.text == "every"
            opens_top_level_body = (
                token.text == "{" and self.depth[i] == 0 and not statement_has_every
            )
            if opens_top_level_body and previous and _ends_rule_head(previous):
                yield token
            previous = token


def _ends_rule_head(token: Token) -> bool:
    return token.text in (")", "]") or (token.kind == "ident" and token.text not in KEYWORDS)
