"""The parser never crashes or hangs: any text is documents or a PolicyValidationError."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.documents.parse import KINDS, parse_policy_source
from policy.documents.policy_set import PolicySet
from policy.errors import PolicyValidationError, format_detail

from .conftest import EXAMPLE

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
DETAIL_KEYS = {"file", "document", "field", "line", "column", "message"}


def parse_or_reject(text: str) -> None:
    try:
        documents = parse_policy_source(text, "fuzz.yaml")
        PolicySet.from_documents(documents, builtin_roles=False)
    except PolicyValidationError as exc:
        for detail in exc.details:
            assert set(detail) == DETAIL_KEYS
            assert detail["line"] is None or detail["line"] >= 1
            assert detail["message"]
            format_detail(detail)


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    parse_or_reject(text)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(EXAMPLE)), st.integers(0, 8), st.text(max_size=6)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_example(edits: list[tuple[int, int, str]]) -> None:
    text = EXAMPLE
    for position, deleted, inserted in edits:
        text = text[:position] + inserted + text[position + deleted :]
    parse_or_reject(text)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["name", "roles", "rego", "budgets", "cases", "input", "x"]),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.sampled_from([*KINDS, "Other"]),
    st.dictionaries(st.text(max_size=8), scalars, max_size=2),
    values,
)
def test_well_formed_yaml_with_random_fields(
    kind: str, metadata: dict[str, Any], spec: Any
) -> None:
    parse_or_reject(yaml.safe_dump({"kind": kind, "metadata": metadata, "spec": spec}))
    parse_or_reject(
        yaml.safe_dump(
            {"kind": kind, "metadata": {"name": "n"}, "spec": {"roles": [spec], "rego": spec}}
        )
    )
