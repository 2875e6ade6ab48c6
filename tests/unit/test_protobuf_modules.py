"""xds-protos (Envoy's gRPC API, for the sidecar's ext_authz) and opentelemetry-proto (the
OTLP exporter's messages) both install `opentelemetry/proto/...` modules; xds-protos's are
older. On a fresh `make` the older ones once won, and every runtime with traces on stopped
at start. The venv must hold OpenTelemetry's, and Envoy's modules must still load beside."""

from __future__ import annotations


def test_the_otlp_exporter_and_envoys_ext_authz_messages_load_in_one_process() -> None:
    from envoy.service.auth.v3 import external_auth_pb2
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.common.v1 import common_pb2

    assert hasattr(common_pb2, "InstrumentationScope")  # what xds-protos's copy lacks
    assert external_auth_pb2.CheckRequest().DESCRIPTOR.name == "CheckRequest"
    assert OTLPSpanExporter is not None
