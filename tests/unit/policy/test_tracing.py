"""policy/runtime/tracing.py: the one switch (OTEL_TRACES_EXPORTER), what is refused at
start, W3C propagation, and the batch span that puts a shipped batch in its call's trace."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from policy.runtime import tracing

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
        # an endpoint alone does not turn traces on: the exporter variable is the switch
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
    ],
)
def test_traces_are_on_only_when_an_exporter_is_named(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert tracing.requested(environ) == expected


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_what_this_build_cannot_export_is_refused_naming_the_variable(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(tracing.TracingConfigError, match=variable):
        tracing.requested(environ)


def test_off_means_no_span_no_header_and_no_context() -> None:
    assert not tracing.ENABLED
    assert tracing.extract({"traceparent": CALLER}) is None
    with tracing.server_span("x", None) as span:
        assert span is None
        assert tracing.traceparent() is None
        assert tracing.inject({}) == {}
        assert tracing.current_span_context() is None


def test_a_server_span_is_the_child_of_the_callers_context(
    spans: InMemorySpanExporter,
) -> None:
    parent = tracing.extract({"traceparent": CALLER, "tracestate": "v=1"})
    with tracing.server_span("check", parent):
        tracing.annotate_decision("dec-1", "allow", "org-1", None)
        own = tracing.traceparent()
        headers = tracing.inject({})
    (span,) = spans.get_finished_spans()
    assert span.context is not None
    assert span.parent is not None
    assert f"{span.context.trace_id:032x}" == CALLER.split("-")[1]
    assert f"{span.parent.span_id:016x}" == CALLER.split("-")[2]
    assert span.attributes == {
        tracing.DECISION_ID: "dec-1",
        tracing.OUTCOME: "allow",
        tracing.ORGANIZATION_ID: "org-1",
    }
    assert own is not None
    assert own.split("-")[:3] == [
        "00",
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
    ]
    assert headers == {"traceparent": own, "tracestate": "v=1"}


@pytest.mark.parametrize(
    "value",
    ["garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-abc-def-01", ""],
)
def test_a_malformed_traceparent_starts_a_new_trace(
    spans: InMemorySpanExporter, value: str
) -> None:
    assert tracing.extract({"traceparent": value}) is None
    with tracing.server_span("check", tracing.extract({"traceparent": value})):
        pass
    (span,) = spans.get_finished_spans()
    assert span.parent is None


def test_a_batch_of_one_trace_joins_it_and_a_mixed_batch_links_each(
    spans: InMemorySpanExporter,
) -> None:
    contexts = []
    for _ in range(2):
        with tracing.server_span("call", None):
            contexts.append(tracing.current_span_context())
    with tracing.batch_span("ship", [contexts[0], contexts[0], None]):
        pass
    with tracing.batch_span("ship", contexts):
        pass
    one, mixed = [s for s in spans.get_finished_spans() if s.name == "ship"]
    first = contexts[0]
    assert first is not None
    assert one.parent is not None
    assert one.context is not None
    assert (one.context.trace_id, one.parent.span_id) == (first.trace_id, first.span_id)
    assert mixed.parent is None
    assert {link.context.span_id for link in mixed.links} == {
        c.span_id for c in contexts if c is not None
    }


def test_an_otlp_exporter_that_cannot_load_is_a_config_error_saying_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a venv with xds-protos's older opentelemetry/proto modules on top gave: an
    # ImportError deep in the exporter, a traceback at every runtime's start.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    with pytest.raises(tracing.TracingConfigError, match="force-reinstall --no-deps"):
        tracing.configure("kaizen-test")
    assert not tracing.ENABLED
