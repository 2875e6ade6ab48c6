"""M13 traces end to end: one call through a real Envoy is one trace across the sidecar, the
gateway and the control plane, collected by a local OTLP/HTTP receiver (tests/e2e/
otlp_receiver.py: a collector's `POST /v1/traces`, decoded with opentelemetry-proto).

Every process is real — `kaizen-studio control-plane` (PostgreSQL + Redis), `kaizen-studio
sidecar` and `kaizen-studio gateway` following it, Envoy in front — each with traces on
through the standard variables only (OTEL_TRACES_EXPORTER=otlp, OTEL_EXPORTER_OTLP_ENDPOINT,
a 100 ms OTEL_BSP_SCHEDULE_DELAY). The stack is shared by the module's traced tests.

What is in one call's trace, and who is whose parent:

    caller (traceparent)
    ├── sidecar  ext_authz                         kaizen.decision_id, outcome, organisation
    └── gateway  POST /v1/agents/{name}/invoke     same decision id
        ├── gateway chat demo                      (the model call; no traceparent sent to it)
        ├── gateway POST sidecar settle            (the policy's budget reserved; a
        │   └── sidecar POST /settle                call that reserved nothing is not settled)
        └── gateway POST executions ingest         (the shipped batch held only this call)
            └── control plane POST /api/v1/executions/ingest

The sidecar's bundle long-poll and decision-log shipping to the control plane are not in
any call's trace (they serve many calls; not traced). With traces off nothing is exported
and Envoy hands the caller's traceparent (or none) to the upstream unchanged.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL, PostgresDatabases
from tests.e2e import sidecar_procs as procs
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan, receiving
from tests.unit.sidecar.factory import ALICE, access_token, make_bundle, make_keys

SERVER, CLIENT = 2, 3  # opentelemetry.proto Span.SpanKind
POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:%(email)s", role: agent-user}
---
# So that a call reserves budget, and the gateway settles it (rsv in the decision header).
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {name: org-daily, scope: org, metric: executions, limit: 1000000, period: day}
"""
AGENTS = """\
kind: Agent
metadata: {name: support-bot}
spec:
  model: {provider: demo, name: demo}
  system_prompt: Answer briefly.
"""


def _traced(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _caller() -> tuple[str, str, str]:
    """(traceparent, trace id, span id) of a caller that traces its own calls."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


class Stack:
    def __init__(self, receiver: OtlpReceiver, envoy: str, cp: httpx.Client, user: str) -> None:
        self.receiver = receiver
        self.envoy = envoy
        self.cp = cp
        self.user = user
        self.admin = {"Authorization": f"Bearer {user}"}

    def invoke(self, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.envoy}/v1/agents/support-bot/invoke",
            json={"input": "hello"},
            headers={"Authorization": f"Bearer {self.user}", **headers},
            timeout=30,
        )

    def decision_of(self, execution_id: str) -> str:
        def found() -> str | None:
            page = self.cp.get("/api/v1/executions", params={"limit": 100}, headers=self.admin)
            for item in page.json()["items"]:
                if item["id"] == execution_id:
                    return str(item["decision_id"])
            return None

        deadline = time.monotonic() + 20
        while (decision := found()) is None:
            assert time.monotonic() < deadline, f"execution {execution_id} never ingested"
            time.sleep(0.1)
        return decision


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with receiving() as running:
        yield running


@pytest.fixture(scope="module")
async def traced_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create(f"e2e_traces_{secrets.token_hex(3)}")


@pytest.fixture(scope="module")
def stack(
    receiver: OtlpReceiver, traced_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("traces")
    control_plane = procs.ControlPlane.configured(
        tmp / "cp",
        database_url=traced_database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    control_plane.env.update(_traced(receiver))
    control_plane.start()
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    try:
        email = f"tracer-{secrets.token_hex(3)}@example.com"
        owner = cp.post(
            "/api/v1/auth/signup",
            json={"email": email, "password": PASSWORD, "organization": "Traces"},
        ).json()
        admin = {"Authorization": f"Bearer {owner['access_token']}"}
        for path, body in (
            ("/api/v1/policies", {"source": POLICY % {"email": email}}),
            ("/api/v1/policies/publish", {}),
            ("/api/v1/agents", {"source": AGENTS}),
        ):
            assert cp.post(path, json=body, headers=admin).status_code in (200, 201)
        listen, envoy_admin, grpc_port, http_port, gateway_port = (
            procs.free_port() for _ in range(5)
        )
        envoy = f"http://127.0.0.1:{listen}"
        gateway = cp.post(
            "/api/v1/gateways",
            json={"name": "traced", "environment": "prod", "url": envoy},
            headers=admin,
        ).json()
        deployed = cp.post(
            "/api/v1/deployments",
            json={"gateway_id": gateway["id"], "kind": "agent", "name": "support-bot"},
            headers=admin,
        )
        assert deployed.status_code == 201, deployed.text
        credential = {
            "KAIZEN_GATEWAY_TOKEN": gateway["credential"],
            "KAIZEN_CONTROL_PLANE_URL": control_plane.url,
            **_traced(receiver),
        }
        gateway_process = procs.spawn(
            [str(procs.BIN / "kaizen-studio"), "gateway"],
            env=procs.clean_env(
                KAIZEN_HOME=str(tmp / "gateway"),
                KAIZEN_GATEWAY_PORT=str(gateway_port),
                KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_port}",
                KAIZEN_GATEWAY_PUBLIC_URL=envoy,
                **credential,
            ),
        )
        with (
            procs.running(gateway_process),
            procs.running(procs.start_sidecar(tmp / "sidecar", grpc_port, http_port, **credential)),
            procs.running(
                procs.start_envoy(
                    procs.envoy_config(
                        listen, envoy_admin, grpc_port, gateway_port, sidecar_http=http_port
                    ),
                    tmp,
                    envoy_admin,
                )
            ),
        ):
            _wait_serving(f"http://127.0.0.1:{gateway_port}", gateway_process)
            yield Stack(receiver, envoy, cp, owner["access_token"])
    finally:
        cp.close()
        control_plane.stop()


def _wait_serving(url: str, process: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/healthz", timeout=2)
            if health.status_code == 200 and health.json()["agents"] == 1:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the gateway is not serving: {procs.output(process)}")


def _only(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service} {name}: {[(s.service, s.name) for s in spans]}"
    return found[0]


def _call_trace(stack: Stack, trace_id: str) -> list[ReceivedSpan]:
    """The call's spans once the last of them is in: the gateway's ingest span ends only
    after the control plane answered, and each process exports on its own schedule, so
    either may arrive last."""
    return list(
        stack.receiver.wait_for(
            lambda _: (
                (spans := stack.receiver.in_trace(trace_id))
                and any(s.service == "kaizen-control-plane" for s in spans)
                and any(s.name == "POST executions ingest" for s in spans)
                and any(s.name == "POST /settle" for s in spans)
                and spans
            )
        )
    )


def test_one_call_through_envoy_is_one_trace_across_sidecar_gateway_and_control_plane(
    stack: Stack,
) -> None:
    traceparent, trace_id, caller_span = _caller()
    answer = stack.invoke(traceparent=traceparent)
    assert answer.status_code == 200, answer.text
    decision_id = stack.decision_of(answer.json()["execution_id"])
    spans = _call_trace(stack, trace_id)

    check = _only(spans, "kaizen-sidecar", "ext_authz")
    assert (check.kind, check.parent_span_id) == (SERVER, caller_span)
    assert check.attributes["kaizen.decision_id"] == decision_id
    assert check.attributes["kaizen.outcome"] == "allow"
    organization = check.attributes["kaizen.organization_id"]
    assert organization
    assert check.attributes["url.path"] == "/v1/agents/support-bot/invoke"

    # The gateway's span is the caller's child too (Envoy passed the caller's context on),
    # and names the same decision.
    served = _only(spans, "kaizen-gateway", "POST /v1/agents/{name}/invoke")
    assert (served.kind, served.parent_span_id) == (SERVER, caller_span)
    assert served.attributes["kaizen.decision_id"] == decision_id
    assert served.attributes["kaizen.organization_id"] == organization
    assert served.attributes["http.response.status_code"] == 200

    model = _only(spans, "kaizen-gateway", "chat demo")
    settle = _only(spans, "kaizen-gateway", "POST sidecar settle")
    ingest = _only(spans, "kaizen-gateway", "POST executions ingest")
    for child in (model, settle, ingest):
        assert (child.kind, child.parent_span_id) == (CLIENT, served.span_id)
    settled = _only(spans, "kaizen-sidecar", "POST /settle")
    assert (settled.kind, settled.parent_span_id) == (SERVER, settle.span_id)
    ingested = _only(spans, "kaizen-control-plane", "POST /api/v1/executions/ingest")
    assert (ingested.kind, ingested.parent_span_id) == (SERVER, ingest.span_id)
    assert ingested.attributes["kaizen.organization_id"] == organization
    assert ingested.attributes["http.response.status_code"] == 200

    # Ids, outcomes, routes and statuses only: no credential anywhere in an attribute.
    secrets_seen = (stack.user, "Bearer", "kgw_")
    for span in spans:
        for value in span.attributes.values():
            assert not any(s in str(value) for s in secrets_seen), (span.name, value)


def test_a_call_without_trace_context_is_one_trace_from_the_sidecar_on(stack: Stack) -> None:
    answer = stack.invoke()
    assert answer.status_code == 200, answer.text
    decision_id = stack.decision_of(answer.json()["execution_id"])

    def check_span(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next(
            (
                s
                for s in spans
                if s.attributes.get("kaizen.decision_id") == decision_id
                and s.service == "kaizen-sidecar"
            ),
            None,
        )

    check = stack.receiver.wait_for(check_span)
    assert check.parent_span_id == ""  # the sidecar started the trace
    spans = _call_trace(stack, check.trace_id)
    served = _only(spans, "kaizen-gateway", "POST /v1/agents/{name}/invoke")
    # The sidecar's allow handed its own traceparent upstream through Envoy.
    assert served.parent_span_id == check.span_id
    assert served.attributes["kaizen.decision_id"] == decision_id


def test_a_denied_call_is_traced_at_the_sidecar_with_the_decision_the_caller_got(
    stack: Stack,
) -> None:
    traceparent, trace_id, caller_span = _caller()
    denied = httpx.post(
        f"{stack.envoy}/v1/no-such-route",  # no route is a deny with a reason, never a pass
        json={"input": "hello"},
        headers={**stack.admin, "traceparent": traceparent},
    )
    assert denied.status_code == 403, denied.text
    decision_id = denied.headers["x-kaizen-decision-id"]
    check = stack.receiver.wait_for(
        lambda _: next(
            (s for s in stack.receiver.in_trace(trace_id) if s.service == "kaizen-sidecar"), None
        )
    )
    assert check.parent_span_id == caller_span
    assert check.attributes["kaizen.decision_id"] == decision_id
    assert check.attributes["kaizen.outcome"] == "deny"
    assert check.attributes["kaizen.organization_id"]
    assert "traceparent" not in denied.headers
    time.sleep(0.5)  # a gateway span would have been exported by now: there is none
    assert {s.service for s in stack.receiver.in_trace(trace_id)} == {"kaizen-sidecar"}


def test_with_traces_off_nothing_is_exported_and_no_traceparent_is_invented(
    tmp_path: Path,
) -> None:
    keys = make_keys()
    (tmp_path / "bundle.tar.gz").write_bytes(make_bundle(keys))
    (tmp_path / "jwks.json").write_text(json.dumps(keys.jwks))
    upstream, grpc_port, http_port, listen, admin = (procs.free_port() for _ in range(5))
    with receiving() as receiver:
        # The endpoint is configured, but no exporter is named: traces stay off.
        off = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with (
            procs.running(procs.start_helper("upstream", upstream)),
            procs.running(
                procs.start_sidecar(
                    tmp_path / "sidecar",
                    grpc_port,
                    http_port,
                    KAIZEN_SIDECAR_BUNDLE=str(tmp_path / "bundle.tar.gz"),
                    KAIZEN_SIDECAR_JWKS=str(tmp_path / "jwks.json"),
                    OTEL_TRACES_EXPORTER="none",
                    **off,
                )
            ),
            procs.running(
                procs.start_envoy(
                    procs.envoy_config(listen, admin, grpc_port, upstream, sidecar_http=http_port),
                    tmp_path,
                    admin,
                )
            ),
        ):
            url = f"http://127.0.0.1:{listen}/v1/agents/support-bot/invoke"
            token = {"Authorization": f"Bearer {access_token(keys, ALICE)}"}
            traceparent, _, _ = _caller()
            plain = httpx.post(url, headers=token)
            carried = httpx.post(url, headers={**token, "traceparent": traceparent})
            assert plain.status_code == carried.status_code == 200, plain.text
            assert plain.json()["trace"] == {}  # nothing invented
            assert carried.json()["trace"] == {"traceparent": traceparent}  # passed unchanged
            time.sleep(1.0)  # ten export intervals
        assert receiver.requests == 0


@pytest.mark.parametrize(
    ("runtime", "environ", "variable"),
    [
        ("control-plane", {"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            "gateway",
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ("sidecar", {"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
    ],
)
def test_traces_this_build_cannot_export_stop_the_runtime_naming_the_variable(
    tmp_path: Path, runtime: str, environ: dict[str, str], variable: str
) -> None:
    env = procs.clean_env(
        KAIZEN_HOME=str(tmp_path),
        KAIZEN_GATEWAY_TOKEN="kgw_" + "t" * 40,
        KAIZEN_CONTROL_PLANE_URL="http://127.0.0.1:9",
        **environ,
    )
    done = subprocess.run(
        [str(procs.BIN / "kaizen-studio"), runtime],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr
