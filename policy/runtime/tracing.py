"""Traces for every runtime (control plane, sidecar, gateway): OpenTelemetry, off by default.

On only when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`, or both,
comma-separated) and `OTEL_SDK_DISABLED` is not `true`; unset or `none` is off (ADR 0013).
Each runtime's entry point calls `configure(service)` once before it builds its servers,
and each server decides then, from `ENABLED`, whether to wrap its handlers: when off no
span is made and no trace header is read. The provider is this module's, never the global
one: libraries that instrument themselves through the global API (redis-py, the `mcp`
SDK) stay silent, and the spans are only the ones placed here and in the runtimes.

The rest is the SDK's own reading of the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT`
/ `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (OTLP over HTTP + protobuf only), `…_HEADERS`,
`…_TIMEOUT`, `…_COMPRESSION`, `…_CERTIFICATE`; `OTEL_SERVICE_NAME` (default the runtime's
own: `kaizen-control-plane`, `kaizen-sidecar`, `kaizen-gateway`), `OTEL_RESOURCE_ATTRIBUTES`;
`OTEL_TRACES_SAMPLER` / `…_ARG`; `OTEL_BSP_*` (the batch processor: spans leave on a
background thread, never on a request's path).

Propagation is W3C trace context only (`traceparent`, `tracestate`), whatever
`OTEL_PROPAGATORS` says: no baggage, which would carry a caller's data into our services.
Span attributes name ids (decision, organisation, bundle revision), outcomes, routes and
statuses — never a credential, a token, a body or a header value.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

# The API only (redis-py imports it anyway); the SDK and the exporter load in `configure`.
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer

log = logging.getLogger(__name__)

# Read by the runtimes once, when they build their servers (never per request in the
# sidecar's check path): True after `configure` started an exporter in this process.
ENABLED = False
EXPORTERS = ("otlp", "console")
OTLP_PROTOCOL = "http/protobuf"
TRACE_HEADERS = ("traceparent", "tracestate")

DECISION_ID = "kaizen.decision_id"
OUTCOME = "kaizen.outcome"
ORGANIZATION_ID = "kaizen.organization_id"
BUNDLE_REVISION = "kaizen.bundle_revision"

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_propagator = TraceContextTextMapPropagator()
_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()


class TracingConfigError(ValueError):
    """The OTEL_* environment asks for something this build cannot do; names the variable."""


def requested(environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters the environment asks for (empty: tracing off); refuses unknown ones."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n and n != "none"]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r}; use otlp, console or none"
        )
    if "otlp" in names:
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or OTLP_PROTOCOL
        ).strip()
        if protocol != OTLP_PROTOCOL:
            variable = (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                if env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                else "OTEL_EXPORTER_OTLP_PROTOCOL"
            )
            raise TracingConfigError(
                f"{variable}: only {OTLP_PROTOCOL} is built in (OTLP over HTTP), not {protocol!r}"
            )
    return names


def configure(service: str) -> bool:
    """Start exporting this process's spans if the environment asks; True when on.

    `service` is the default `service.name` (OTEL_SERVICE_NAME or a `service.name` in
    OTEL_RESOURCE_ATTRIBUTES wins). Idempotent; raises TracingConfigError."""
    global ENABLED, _provider, _tracer
    names = requested()
    if not names or ENABLED:
        return ENABLED
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    detected = OTELResourceDetector().detect()
    ours = {} if detected.attributes.get(SERVICE_NAME) else {SERVICE_NAME: service}
    # The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    provider = TracerProvider(resource=Resource.create(ours))
    for name in names:
        exporter: SpanExporter = (
            _otlp_exporter() if name == "otlp" else ConsoleSpanExporter(service_name=service)
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("kaizen-studio")
    ENABLED = True
    log.info("traces on: %s exporter(s), service %s", ",".join(names), service)
    return True


def _otlp_exporter() -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:  # xds-protos installed over opentelemetry-proto's modules
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER=otlp: the OTLP exporter cannot load ({error}); "
            "xds-protos carries an older copy of opentelemetry-proto's modules and was "
            "installed after it: pip install --force-reinstall --no-deps "
            "opentelemetry-proto (make does this)"
        ) from error
    return OTLPSpanExporter()


def flush(timeout_seconds: float = 5.0) -> None:
    """Export what is buffered now: an app stopping calls it, as uvicorn may end the process
    by its signal, when no exit handler runs."""
    if _provider is not None:
        _provider.force_flush(int(timeout_seconds * 1000))


def shutdown() -> None:
    """Export what is buffered and stop (also done at interpreter exit)."""
    global ENABLED, _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    ENABLED, _provider, _tracer = False, None, None


def use_provider(provider: TracerProvider | None) -> None:
    """Tests: trace into `provider` (e.g. with an in-memory exporter); None turns it off."""
    global ENABLED, _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("kaizen-studio") if provider is not None else None
    ENABLED = provider is not None


# -- propagation ------------------------------------------------------------------------------


def extract(headers: Mapping[str, str]) -> Context | None:
    """The caller's W3C context from lowercase-named headers; None if absent or malformed
    (or when traces are off)."""
    if not ENABLED or "traceparent" not in headers:
        return None
    context = _propagator.extract({h: headers[h] for h in TRACE_HEADERS if h in headers})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current span's traceparent (and tracestate) to `headers`; nothing when off."""
    if ENABLED:
        _propagator.inject(headers)
    return headers


def traceparent() -> str | None:
    """The current span's `traceparent` value (None when off or outside a span)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def current_span_context() -> SpanContext | None:
    if not ENABLED:
        return None
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


# -- spans ------------------------------------------------------------------------------------


def server_span(
    name: str, parent: Context | None, **attributes: Any
) -> contextlib.AbstractContextManager[Span | None]:
    """A SERVER span, child of the caller's context (`extract(headers)`; None: a new
    trace), current while open."""
    if _tracer is None:
        return _NOTHING
    return _tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.SERVER, attributes=_clean(attributes)
    )


def client_span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span | None]:
    """A CLIENT span (an outbound call), child of the current span; `inject` inside it."""
    if _tracer is None:
        return _NOTHING
    return _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=_clean(attributes))


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span | None]:
    """An INTERNAL span, child of the current one."""
    if _tracer is None:
        return _NOTHING
    return _tracer.start_as_current_span(name, attributes=_clean(attributes))


@contextlib.contextmanager
def batch_span(
    name: str, contexts: Iterable[SpanContext | None], **attributes: Any
) -> Iterator[Span | None]:
    """A CLIENT span sending work gathered from several calls (a shipped batch).

    When every item came from one trace, the span is a child of the first item's span, so
    the receiver's work shows in that call's trace; items of several traces make it a root
    span linked to each of them."""
    if _tracer is None:
        yield None
        return
    valid = [c for c in contexts if c is not None and c.is_valid]
    traces = {c.trace_id for c in valid}
    links: list[Link] = []
    if len(traces) == 1:
        parent = trace.set_span_in_context(NonRecordingSpan(valid[0]))
    else:
        links = [Link(c) for c in {c.span_id: c for c in valid}.values()][:128]
        parent = Context()  # a new trace, not the shipper task's
    with _tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CLIENT, links=links, attributes=_clean(attributes)
    ) as opened:
        yield opened


def set_attributes(**attributes: Any) -> None:
    """On the current span (None values left out); nothing when off."""
    if _tracer is None:
        return
    trace.get_current_span().set_attributes(_clean(attributes))


def annotate_decision(
    decision_id: str, outcome: str, organization: str | None, bundle_revision: str | None
) -> None:
    """The decision's ids and outcome on the current span."""
    set_attributes(
        **{
            DECISION_ID: decision_id,
            OUTCOME: outcome,
            ORGANIZATION_ID: organization,
            BUNDLE_REVISION: bundle_revision,
        }
    )


def set_status(status: int) -> None:
    """The HTTP status answered, and ERROR on the span for a 5xx."""
    if _tracer is None:
        return
    current = trace.get_current_span()
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}
