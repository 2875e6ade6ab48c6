"""YAML/JSON policy text → plain values with the line and column of every node.

PyYAML's `compose` keeps a mark per node; we build the Python value ourselves from the
node graph so that a validation error can point at the exact line of the offending field.
Timestamps stay strings (a decision input's `context.time` must reach Rego as text), only
JSON-compatible values are accepted, and the size of what we build is capped so a hostile
source (alias bombs, deep nesting) fails fast instead of exhausting the process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policy.errors import ErrorDetail, PolicyValidationError

Path = tuple[str | int, ...]
_T = TypeVar("_T")

MAX_SOURCE_CHARS = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass(frozen=True)
class BlockScalar:
    """Where the content of a literal block scalar (`key: |`) starts, to map lines back."""

    first_line: int
    indent: int


@dataclass(frozen=True)
class RawDocument:
    file: str
    index: int
    body: object
    text: str
    positions: Mapping[Path, Position] = field(default_factory=dict)
    block_scalars: Mapping[Path, BlockScalar] = field(default_factory=dict)

    def locate(self, path: Path) -> Position | None:
        """The position of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return None


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# libyaml composes ~10x faster than the pure-Python parser (a 10,000-binding RolePolicy
# in well under a second); its nodes carry the same marks, in characters.
_BaseLoader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader without implicit timestamps: `2026-01-01T00:00:00Z` stays a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TAG + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _NodeError(Exception):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node


class _Builder:
    def __init__(self, loader: _Loader, text: str) -> None:
        self._loader = loader
        self._text = text
        self._count = 0
        self.positions: dict[Path, Position] = {}
        self.block_scalars: dict[Path, BlockScalar] = {}

    def build(self, node: Node, path: Path) -> object:
        self._count += 1
        if self._count > MAX_NODES:
            raise _NodeError(node, f"document has more than {MAX_NODES} values (alias bomb?)")
        if len(path) > MAX_DEPTH:
            raise _NodeError(node, f"nesting deeper than {MAX_DEPTH} levels")
        self.positions[path] = Position(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                raise _NodeError(node, f"unsupported YAML tag {node.tag}")
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        raise _NodeError(node, "unsupported YAML node")

    def _scalar(self, node: ScalarNode, path: Path) -> object:
        if node.tag not in _SCALAR_TAGS:
            raise _NodeError(node, f"unsupported YAML tag {node.tag}")
        try:
            value = self._loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:
            raise _NodeError(node, f"invalid {node.tag.removeprefix(_TAG)}: {exc}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _NodeError(node, "numbers must be finite")
        if node.style == "|":
            self.block_scalars[path] = self._block_start(node)
        return value

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, object]:
        if node.tag != _TAG + "map":
            raise _NodeError(node, f"unsupported YAML tag {node.tag}")
        self._loader.flatten_mapping(node)
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _TAG + "str"):
                raise _NodeError(key_node, "mapping keys must be strings")
            key = str(key_node.value)
            if key in out:
                raise _NodeError(key_node, f"duplicate key {key!r}")
            out[key] = self.build(value_node, (*path, key))
        return out

    def _block_start(self, node: ScalarNode) -> BlockScalar:
        first = node.start_mark.line + 1  # 0-based line after the `|` indicator
        lines = self._text.splitlines()
        indent = 0
        for line in lines[first : first + 1000]:
            if line.strip():
                indent = len(line) - len(line.lstrip(" "))
                break
        return BlockScalar(first_line=first + 1, indent=indent)


def load_documents(text: str, filename: str = "<source>") -> list[RawDocument]:
    """Every non-empty document of a YAML or JSON source (a top-level list is split too)."""
    if len(text) > MAX_SOURCE_CHARS:
        raise PolicyValidationError(
            [_detail(filename, None, None, f"source larger than {MAX_SOURCE_CHARS} characters")]
        )
    try:
        return list(_split_lists(_load_yaml(text, filename)))
    except _YamlSyntax as exc:
        if text.lstrip().startswith(("{", "[")):
            return list(_split_lists(_load_json(text, filename)))
        raise PolicyValidationError([exc.detail]) from None


class _YamlSyntax(Exception):
    def __init__(self, detail: ErrorDetail) -> None:
        super().__init__(detail["message"])
        self.detail = detail


def _load_yaml(text: str, filename: str) -> list[RawDocument]:
    documents: list[RawDocument] = []
    documents_end = 0
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise _YamlSyntax(_reader_detail(exc, text, filename, 0)) from None
    try:
        while True:
            try:
                if not loader.check_node():
                    break
                node = loader.get_node()
            except yaml.reader.ReaderError as exc:
                raise _YamlSyntax(_reader_detail(exc, text, filename, len(documents))) from None
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                message = str(exc.problem or exc.context or "invalid YAML")
                pos = Position(mark.line + 1, mark.column + 1) if mark else None
                raise _YamlSyntax(_detail(filename, len(documents), pos, message)) from None
            except (yaml.YAMLError, RecursionError) as exc:
                message = "nesting too deep" if isinstance(exc, RecursionError) else str(exc)
                raise _YamlSyntax(_detail(filename, len(documents), None, message)) from None
            if node is None or _is_empty(node):
                continue
            previous_end, documents_end = documents_end, node.end_mark.index
            builder = _Builder(loader, text)
            try:
                body = builder.build(node, ())
            except _NodeError as exc:
                mark = exc.node.start_mark
                pos = Position(mark.line + 1, mark.column + 1)
                raise PolicyValidationError(
                    [_detail(filename, len(documents), pos, str(exc))]
                ) from None
            except RecursionError:
                raise PolicyValidationError(
                    [_detail(filename, len(documents), None, "nesting too deep")]
                ) from None
            documents.append(
                RawDocument(
                    file=filename,
                    index=len(documents),
                    body=body,
                    text=_document_text(text, previous_end, node),
                    positions=builder.positions,
                    block_scalars=builder.block_scalars,
                )
            )
    finally:
        loader.dispose()
    return documents


def _reader_detail(
    exc: yaml.reader.ReaderError, text: str, filename: str, document: int
) -> ErrorDetail:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    message = f"character {exc.character:#06x} is not allowed"
    return _detail(filename, document, Position(line, column), message)


def _document_text(text: str, previous_end: int, node: Node) -> str:
    """The document's own text with its leading comments, without `---` or directives."""
    head = text[previous_end : node.start_mark.index].splitlines(keepends=True)
    kept = [line for line in head if not line.lstrip().startswith(("---", "...", "%"))]
    own = "".join(kept) + text[node.start_mark.index : node.end_mark.index]
    return own.lstrip("\n").rstrip() + "\n"


def _is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG + "null" and node.value in ("", "~")


def _load_json(text: str, filename: str) -> list[RawDocument]:
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        pos = Position(exc.lineno, exc.colno)
        raise PolicyValidationError([_detail(filename, 0, pos, exc.msg)]) from None
    except (ValueError, RecursionError) as exc:
        raise PolicyValidationError([_detail(filename, 0, None, str(exc))]) from None
    return [RawDocument(file=filename, index=0, body=body, text=text)]


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _split_lists(documents: list[RawDocument]) -> Iterator[RawDocument]:
    """A top-level list (`[{...}, {...}]`, common in JSON) holds one document per item."""
    index = 0
    for doc in documents:
        if not isinstance(doc.body, list):
            yield RawDocument(doc.file, index, doc.body, doc.text, doc.positions, doc.block_scalars)
            index += 1
            continue
        for i, item in enumerate(doc.body):
            yield RawDocument(
                file=doc.file,
                index=index,
                body=item,
                text=json.dumps(item, indent=2) + "\n",
                positions=_rebase(doc.positions, i),
                block_scalars=_rebase(doc.block_scalars, i),
            )
            index += 1


def _rebase(by_path: Mapping[Path, _T], item: int) -> dict[Path, _T]:
    return {path[1:]: value for path, value in by_path.items() if path[:1] == (item,)}


def _detail(filename: str, document: int | None, pos: Position | None, message: str) -> ErrorDetail:
    return ErrorDetail(
        file=filename,
        document=document,
        field=None,
        line=pos.line if pos else None,
        column=pos.column if pos else None,
        message=message,
    )
