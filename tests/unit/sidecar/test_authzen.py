"""AuthZEN 1.0 requests → our decision input (authz_sidecar/authzen.py), no server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz_sidecar import authzen
from authz_sidecar.authzen import AuthzenError, Evaluation
from policy.engine.decision_input import input_problems

# The spec's Access Evaluation example (authorization-api-1_0 "The Access Evaluation API
# Request"), as a PEP would send it.
SPEC_REQUEST: dict[str, Any] = {
    "subject": {"type": "user", "id": "alice@example.com"},
    "resource": {"type": "account", "id": "123"},
    "action": {"name": "can_read", "properties": {"method": "GET"}},
    "context": {"time": "1985-10-26T01:22-07:00"},
}


def to_input(evaluation: Evaluation, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "organization": "org-acme",
        "workspace": "prod",
        "environment": None,
        "gateway": "edge",
        "request": {"method": "POST", "path": "/access/v1/evaluation", "source_ip": "10.0.0.9"},
    }
    options.update(overrides)
    return evaluation.decision_input(**options)


def test_the_spec_example_maps_onto_a_valid_decision_input() -> None:
    decision_input = to_input(authzen.evaluation(SPEC_REQUEST))
    assert input_problems(decision_input) == []
    assert decision_input["principal"] == {
        "id": "user:alice@example.com",
        "type": "user",
        "organization": "org-acme",
        "roles": [],
        "teams": [],
        "attributes": {},
    }
    assert decision_input["action"] == "can_read"
    assert decision_input["action_properties"] == {"method": "GET"}
    assert decision_input["resource"] == {
        "type": "account",
        "id": "account:123",
        "workspace": "prod",
        "attributes": {},
    }
    assert decision_input["channel"] == "api"
    # The PDP's clock decides, not the caller's `time`; the rest of its context is kept.
    assert decision_input["context"]["time"] != "1985-10-26T01:22-07:00"
    assert decision_input["context"]["gateway"] == "edge"
    assert decision_input["context"]["environment"] == "prod"


def test_properties_become_attributes_and_never_roles() -> None:
    request = {
        "subject": {
            "type": "user",
            "id": "bob",
            "properties": {"role": "admin", "roles": ["owner"], "teams": ["sre"]},
        },
        "action": {"name": "write"},
        "resource": {"type": "record", "id": "record-2", "properties": {"status": "archived"}},
        "context": {"ip": "192.168.1.1", "environment": "forged", "gateway": "forged"},
    }
    decision_input = to_input(authzen.evaluation(request))
    principal = decision_input["principal"]
    assert (principal["roles"], principal["teams"]) == ([], [])
    assert principal["attributes"] == {"role": "admin", "roles": ["owner"], "teams": ["sre"]}
    assert decision_input["resource"]["attributes"] == {"status": "archived"}
    assert "action_properties" not in decision_input
    # The caller's context is kept, except what this sidecar itself says.
    assert decision_input["context"]["ip"] == "192.168.1.1"
    assert decision_input["context"]["gateway"] == "edge"
    assert decision_input["context"]["environment"] == "prod"


def test_ids_are_qualified_by_their_type_once() -> None:
    plain = authzen.evaluation(
        {
            "subject": {"type": "apikey", "id": "ci-bot"},
            "action": {"name": "invoke"},
            "resource": {"type": "agent", "id": "support-bot"},
        }
    )
    qualified = authzen.evaluation(
        {
            "subject": {"type": "apikey", "id": "apikey:ci-bot"},
            "action": {"name": "invoke"},
            "resource": {"type": "agent", "id": "agent:support-bot"},
        }
    )
    assert (plain.principal_id, plain.resource_id) == ("apikey:ci-bot", "agent:support-bot")
    assert (qualified.principal_id, qualified.resource_id) == (
        plain.principal_id,
        plain.resource_id,
    )


# The certification scenario's error cases (authorization-api-1_0-scenario, C-2.4), each
# a 400 naming the field.
@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"action": {"name": "read"}, "resource": {"type": "record", "id": "r"}}, "subject"),
        ({"subject": {"type": "user", "id": "a"}, "resource": {"type": "r", "id": "r"}}, "action"),
        ({"subject": {"type": "user", "id": "a"}, "action": {"name": "read"}}, "resource"),
        (
            {
                "subject": {"id": "alice"},
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
            },
            "subject.type",
        ),
        (
            {
                "subject": {"type": "user"},
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
            },
            "subject.id",
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {},
                "resource": {"type": "record", "id": "record-1"},
            },
            "action.name",
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": "read"},
                "resource": {"id": "record-1"},
            },
            "resource.type",
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": "read"},
                "resource": {"type": "record"},
            },
            "resource.id",
        ),
        (
            {
                "subject": "alice",
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
            },
            "subject",
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": 123},
                "resource": {"type": "record", "id": "record-1"},
            },
            "action.name",
        ),
        (
            {
                "subject": {"type": "user", "id": "alice", "properties": ["x"]},
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
            },
            "subject.properties",
        ),
        (
            {
                "subject": {"type": "role", "id": "owner"},
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
            },
            "subject.type",
        ),
        (
            {
                "subject": {"type": "user", "id": "a\nb"},
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
            },
            "subject.id",
        ),
        (
            {
                "subject": {"type": "user:x", "id": "alice"},
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
            },
            "subject.type",
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": "invoke"},
                "resource": {"type": "agent", "id": "a"},
                "context": {"estimated_cost_usd": -1},
            },
            "context.estimated_cost_usd",
        ),
        (
            {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": "read"},
                "resource": {"type": "record", "id": "record-1"},
                "context": [],
            },
            "context",
        ),
    ],
)
def test_missing_or_mistyped_fields_name_the_field(
    request_body: dict[str, Any], field: str
) -> None:
    with pytest.raises(AuthzenError) as raised:
        authzen.evaluation(request_body)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "body: is empty; send a JSON object"),
        (b"{", "body: is not valid JSON"),
        (b"[1]", "body: must be a JSON object"),
        (b"\xff\xfe", "body: is not valid JSON"),
        (b"[" * 100_000, "body: is not valid JSON"),
        (
            b'{"subject": {"type": "user", "id": "a", "properties": {"n": NaN}}}',
            "body: is not valid JSON",
        ),
        (b'{"context": {"estimated_cost_usd": 1e400}}', "body: is not valid JSON"),
        (b'{"context": {"x": -Infinity}}', "body: is not valid JSON"),
    ],
)
def test_bodies_that_are_not_a_json_object(body: bytes, message: str) -> None:
    with pytest.raises(AuthzenError) as raised:
        authzen.parse_json(body)
    assert str(raised.value) == message


def test_unknown_fields_are_ignored() -> None:
    request = {**SPEC_REQUEST, "foo": "bar", "futureField": {"nested": True}}
    assert authzen.evaluation(request) == authzen.evaluation(SPEC_REQUEST)


def test_batch_defaults_are_replaced_whole_per_evaluation() -> None:
    # Certification C-3.2.7: `{}` inherits every default; a given resource replaces it.
    request = {
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "write"},
        "resource": {"type": "record", "id": "record-1", "properties": {"status": "active"}},
        "context": {"time": "2025-06-27T18:03-07:00", "source": "top"},
        "evaluations": [
            {},
            {"resource": {"type": "record", "id": "record-2"}, "context": {"source": "item"}},
        ],
    }
    parsed = authzen.batch(request)
    assert parsed.single is None
    assert parsed.semantic == "execute_all"
    first, second = parsed.items
    assert isinstance(first, Evaluation)
    assert isinstance(second, Evaluation)
    assert (first.resource_id, first.resource_properties) == (
        "record:record-1",
        {"status": "active"},
    )
    assert (second.resource_id, second.resource_properties) == ("record:record-2", {})
    assert first.context["source"] == "top"
    assert second.context == {"source": "item"}


def test_a_batch_item_that_cannot_be_evaluated_is_its_own_error() -> None:
    # Certification C-3.4.1: the second item misses `resource`; the first still counts.
    request = {
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "read"},
        "options": {"evaluations_semantic": "execute_all"},
        "evaluations": [{"resource": {"type": "record", "id": "record-1"}}, {}, "x"],
    }
    first, second, third = authzen.batch(request).items
    assert isinstance(first, Evaluation)
    assert isinstance(second, AuthzenError)
    assert second.field == "evaluations[1].resource"
    assert isinstance(third, AuthzenError)
    assert third.field == "evaluations[2]"


def test_a_batch_without_evaluations_is_a_single_evaluation() -> None:
    for request in (SPEC_REQUEST, {**SPEC_REQUEST, "evaluations": []}):
        parsed = authzen.batch(request)
        assert parsed.items == ()
        assert parsed.single == authzen.evaluation(SPEC_REQUEST)
    with pytest.raises(AuthzenError) as raised:
        authzen.batch({"evaluations": []})
    assert raised.value.field == "subject"


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"evaluations": {"a": 1}}, "evaluations"),
        ({"evaluations": [{}] * 101}, "evaluations"),
        ({"evaluations": [{}], "options": "fast"}, "options"),
        (
            {"evaluations": [{}], "options": {"evaluations_semantic": "first"}},
            "options.evaluations_semantic",
        ),
    ],
)
def test_whole_batch_errors(request_body: dict[str, Any], field: str) -> None:
    with pytest.raises(AuthzenError) as raised:
        authzen.batch(request_body)
    assert raised.value.field == field


def test_every_mapped_input_is_json() -> None:
    decision_input = to_input(authzen.evaluation(SPEC_REQUEST))
    assert json.loads(json.dumps(decision_input)) == decision_input


# Any JSON at all: an Evaluation (or a batch of them and their errors) or an AuthzenError
# naming a field; never another exception (which the server would answer with a 503).
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "subject",
                    "action",
                    "resource",
                    "context",
                    "type",
                    "id",
                    "name",
                    "properties",
                    "evaluations",
                    "options",
                    "evaluations_semantic",
                    "estimated_cost_usd",
                    "x",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_any_json_is_an_evaluation_or_a_named_error(value: Any) -> None:
    body = json.dumps(value, allow_nan=True).encode()  # NaN and Infinity: refused as JSON
    try:
        parsed: authzen.Batch | AuthzenError = authzen.batch(authzen.parse_json(body))
    except AuthzenError as exc:
        parsed = exc
    if isinstance(parsed, AuthzenError):
        assert parsed.field
        return
    for item in (*parsed.items, parsed.single):
        if isinstance(item, Evaluation):
            assert input_problems(to_input(item)) == []
        else:
            assert item is None or item.field
