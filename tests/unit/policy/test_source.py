from __future__ import annotations

import pytest

from policy.documents.source import Position, load_documents
from policy.errors import PolicyValidationError


def test_positions_are_one_based_line_and_column_of_each_value() -> None:
    (doc,) = load_documents("a:\n  b: [x, y]\n", "f.yaml")
    assert doc.positions[("a", "b")] == Position(2, 6)
    assert doc.positions[("a", "b", 1)] == Position(2, 10)
    assert doc.locate(("a", "b", 7, "deeper")) == Position(2, 6)


def test_timestamps_stay_strings_and_numbers_stay_numbers() -> None:
    (doc,) = load_documents("t: 2026-11-26T12:00:00Z\nn: 5\nf: 0.5\nb: true\nz: null\n")
    assert doc.body == {"t": "2026-11-26T12:00:00Z", "n": 5, "f": 0.5, "b": True, "z": None}


def test_each_document_keeps_its_own_text_with_its_comments() -> None:
    source = "# first\nkind: A\n---\n# second\nkind: B\n--- {kind: C}\n---\n"
    docs = load_documents(source)
    assert [d.text for d in docs] == ["# first\nkind: A\n", "# second\nkind: B\n", "{kind: C}\n"]
    assert [d.index for d in docs] == [0, 1, 2]


def test_literal_block_records_where_its_content_starts() -> None:
    (doc,) = load_documents("spec:\n  rego: |\n    package x\n    y := 1\n")
    block = doc.block_scalars[("spec", "rego")]
    assert (block.first_line, block.indent) == (3, 4)


def test_a_top_level_json_list_is_one_document_per_item() -> None:
    docs = load_documents('[{"kind": "A"},\n {"kind": "B"}]')
    assert [d.body for d in docs] == [{"kind": "A"}, {"kind": "B"}]
    assert docs[1].positions[("kind",)] == Position(2, 11)


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("a: [1, 2\n", 2, 1, "expected ',' or ']'"),
        ("a: 1\na: 2\n", 2, 1, "duplicate key 'a'"),
        ("a: !!binary aGVsbG8=\n", 1, 4, "unsupported YAML tag"),
        ("a: .nan\n", 1, 4, "numbers must be finite"),
        ("1: x\n", 1, 1, "mapping keys must be strings"),
        ("x: &a [*a]\n", 1, 4, "nesting deeper than 64 levels"),
        ("a: 1\nb: x\x07\n", 2, 5, "character 0x0007 is not allowed"),
    ],
)
def test_malformed_yaml_is_reported_at_its_position(
    source: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(PolicyValidationError) as raised:
        load_documents(source, "bad.yaml")
    (detail,) = raised.value.details
    assert (detail["file"], detail["line"], detail["column"]) == ("bad.yaml", line, column)
    assert message in detail["message"]


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(PolicyValidationError, match="alias bomb"):
        load_documents("\n".join(lines))


LONG_KEY = "k" * 1100  # YAML caps implicit keys at 1024 characters; JSON does not


def test_json_that_yaml_cannot_read_is_read_as_json() -> None:
    (doc,) = load_documents(f'{{"kind": "A", "{LONG_KEY}": 1}}')
    assert doc.body == {"kind": "A", LONG_KEY: 1}


def test_invalid_json_reports_the_json_error_position() -> None:
    with pytest.raises(PolicyValidationError) as raised:
        load_documents(f'{{"{LONG_KEY}": 1,\n "x": }}')
    (detail,) = raised.value.details
    assert (detail["line"], detail["column"]) == (2, 7)
