"""Decision engine in-process: a tenant with 50 roles, 10,000 bindings, 20 Rego rules.

Measures per decision (median and p99, µs): RBAC alone (compiled index vs pycasbin
enforce, the baseline), ABAC alone (regopy vs hobofan-regorus on the same Rego), the
whole decision with and without the decision cache; then validate/compile/sign/verify
time and bundle size. Requests are drawn from 2,000 distinct (principal, action,
resource, tool) combinations; every request carries a fresh time and request id, as in
production, so caches only hit on what the policies actually read.

Run: `.venv/bin/python -m tests.bench bench_policy`
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import hobofan_regorus
import yaml

from policy.bundles.bundle import build_bundle, load_bundle
from policy.bundles.keys import generate_ed25519, load_private_key
from policy.compile.casbin_model import casbin_allows, casbin_enforcer
from policy.compile.compiler import CompileContext, compile_policy
from policy.compile.rego_compile import AGGREGATE_ENTRYPOINT, aggregate_module
from policy.documents.parse import parse_policy_source
from policy.documents.policy_set import PolicySet
from policy.engine.abac import EmbeddedRegoEvaluator
from policy.engine.decide import DecisionEngine
from policy.engine.rbac import principal_subjects
from policy.workloads import AgentConfig, ModelConfig

ROLES, BINDINGS, REGO_MODULES = 50, 10_000, 10  # 2 rules per module: 20 rules
USERS, TEAMS = 6_000, 100
WORKSPACES = ["prod", "dev", "stage"]
ACTIONS = ["invoke", "run", "read", "deploy", "update"]
TOOLS = ["search", "email", "shell", "browser", "sql"]
SEED = 20261126


def tenant_source(rng: random.Random) -> str:
    roles = []
    for i in range(ROLES):
        permissions = [
            {
                "resource": rng.choice(
                    ["agent:*", f"agent:bot-{i % 20}*", "pipeline:*", f"agent:bot-{i}"]
                ),
                "actions": rng.sample(ACTIONS, k=rng.randint(1, 3)),
            }
            for _ in range(rng.randint(2, 5))
        ]
        role: dict[str, Any] = {"name": f"role-{i:02d}", "permissions": permissions}
        if i + 1 < ROLES and rng.random() < 0.5:
            role["inherits"] = [f"role-{rng.randint(i + 1, ROLES - 1):02d}"]
        roles.append(role)
    bindings: list[dict[str, Any]] = []
    while len(bindings) < BINDINGS:
        subject = rng.choice(
            [f"user:u{rng.randrange(USERS)}@example.com", f"team:t{rng.randrange(TEAMS)}"]
        )
        binding = {"subject": subject, "role": f"role-{rng.randrange(ROLES):02d}"}
        if rng.random() < 0.4:
            binding["workspace"] = rng.choice(WORKSPACES)
        bindings.append(binding)
    documents: list[dict[str, Any]] = [
        {
            "kind": "RolePolicy",
            "metadata": {"name": "roles"},
            "spec": {"roles": roles, "bindings": bindings},
        }
    ]
    for i in range(REGO_MODULES):
        rego = (
            f"package kaizen.abac.rules{i}\nimport rego.v1\n"
            f'deny contains "tool {TOOLS[i % 5]} is off in {WORKSPACES[i % 3]}" if {{\n'
            f'  input.tool.name == "{TOOLS[i % 5]}"\n'
            f'  input.resource.workspace == "{WORKSPACES[i % 3]}"\n'
            f"  input.principal.attributes.clearance < {i}\n}}\n"
            f'require_approval contains "{ACTIONS[i % 5]} on bot-{i} needs approval" if {{\n'
            f'  input.action == "{ACTIONS[i % 5]}"\n  input.resource.id == "agent:bot-{i}"\n}}\n'
        )
        documents.append(
            {"kind": "RegoPolicy", "metadata": {"name": f"rules{i}"}, "spec": {"rego": rego}}
        )
    documents.append(
        {
            "kind": "BudgetPolicy",
            "metadata": {"name": "spend"},
            "spec": {
                "budgets": [
                    {"scope": f"team:t{i}", "metric": "cost_usd", "limit": 1e9, "period": "month"}
                    for i in range(TEAMS)
                ]
            },
        }
    )
    return yaml.safe_dump_all(documents, sort_keys=False)


def request_pool(rng: random.Random) -> list[dict[str, Any]]:
    pool = []
    for _ in range(2_000):
        user = rng.randrange(USERS)
        pool.append(
            {
                "principal": {
                    "id": f"user:u{user}@example.com",
                    "type": "user",
                    "organization": "org-bench",
                    "roles": [],
                    "teams": [f"t{rng.randrange(TEAMS)}" for _ in range(2)],
                    "attributes": {"clearance": rng.randrange(12)},
                },
                "action": rng.choice(ACTIONS),
                "resource": {
                    "type": "agent",
                    "id": f"agent:bot-{rng.randrange(30)}",
                    "workspace": rng.choice(WORKSPACES),
                    "attributes": {},
                },
                "channel": "mcp",
                "tool": {"name": rng.choice(TOOLS), "arguments": {}},
                "request": {"method": "POST", "path": "/mcp", "source_ip": "10.0.0.1"},
                "context": {"environment": "prod", "estimated_cost_usd": 0.01},
            }
        )
    return pool


def fresh(request: dict[str, Any], i: int) -> dict[str, Any]:
    """The same request at another moment: new time and request id, as in production."""
    return {
        **request,
        "request": {**request["request"], "id": f"req-{i}"},
        "context": {
            **request["context"],
            "time": f"2026-11-26T12:{i // 60 % 60:02d}:{i % 60:02d}Z",
        },
    }


def measure(
    call: Callable[[int], object], iterations: int, warmup: int = 200
) -> tuple[float, float]:
    for i in range(warmup):
        call(i)
    samples = []
    clock = time.perf_counter_ns
    for i in range(iterations):
        start = clock()
        call(i)
        samples.append(clock() - start)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1000


def main() -> None:
    rng = random.Random(SEED)
    source = tenant_source(rng)
    pool = request_pool(rng)
    draw = [rng.randrange(len(pool)) for _ in range(20_000)]

    documents, parse_ms = timed(lambda: parse_policy_source(source, "tenant.yaml"))
    policy_set, set_ms = timed(lambda: PolicySet.from_documents(documents))
    # The agents the requests call are deployed: their ceilings are what budgets reserve.
    agents = {
        f"bot-{i}": AgentConfig(f"bot-{i}", ModelConfig("demo", "demo")).to_dict()
        for i in range(30)
    }
    context = CompileContext("org-bench", agents=agents)
    compiled, compile_ms = timed(lambda: compile_policy(policy_set, context))
    pem, jwks = generate_ed25519("bench")
    key = load_private_key(pem)
    bundle, sign_ms = timed(
        lambda: build_bundle(compiled, revision=1, signing_key=key, kid="bench", scope="org-bench")
    )
    verified, verify_ms = timed(lambda: load_bundle(bundle, jwks, scope="org-bench"))
    cached, engine_ms = timed(lambda: DecisionEngine.from_bundle(verified))
    uncached = DecisionEngine(compiled, cache_size=0)
    enforcer, casbin_ms = timed(lambda: casbin_enforcer(compiled.casbin_policy))

    def request(i: int) -> dict[str, Any]:
        return fresh(pool[draw[i % len(draw)]], i)

    def casbin_decide(i: int) -> bool:
        value = request(i)
        principal = value["principal"]
        subjects = principal_subjects(principal["id"], "user", principal["teams"])
        return casbin_allows(
            enforcer,
            subjects,
            value["resource"]["workspace"],
            value["resource"]["id"],
            value["action"],
        )

    agreement = sum(
        casbin_decide(i) == uncached.check_rbac(request(i)).allowed for i in range(2_000)
    )

    evaluator = EmbeddedRegoEvaluator(compiled.rego_modules, compiled.data)
    regorus = hobofan_regorus.Engine()
    for path, text in compiled.rego_modules.items():
        regorus.add_policy(path, text)
    regorus.add_policy("aggregate.rego", aggregate_module(evaluator.packages))
    regorus.add_data_json(json.dumps(compiled.data))
    rule = "data." + AGGREGATE_ENTRYPOINT.replace("/", ".")

    def regorus_eval(i: int) -> object:
        regorus.set_input_json(json.dumps(request(i)))
        return regorus.eval_rule_as_json(rule)

    def casbin_single(i: int) -> bool:
        value = request(i)
        resource = value["resource"]
        return bool(
            enforcer.enforce(
                value["principal"]["id"], resource["workspace"], resource["id"], value["action"]
            )
        )

    cases: list[tuple[str, Callable[[int], object], int]] = [
        ("RBAC  pycasbin, all subjects (baseline)", casbin_decide, 3_000),
        ("RBAC  pycasbin, one enforce call", casbin_single, 3_000),
        ("RBAC  compiled index, no cache", lambda i: uncached.check_rbac(request(i)), 20_000),
        ("RBAC  compiled index + cache", lambda i: cached.check_rbac(request(i)), 20_000),
        ("ABAC  regopy (compiled), no cache", lambda i: evaluator.evaluate(request(i)), 2_000),
        ("ABAC  hobofan-regorus, same Rego", regorus_eval, 2_000),
        ("ABAC  regopy + decision cache", lambda i: cached.evaluate_abac(request(i)), 20_000),
        ("whole decision, no cache", lambda i: uncached.decide(request(i)), 2_000),
        ("whole decision + decision cache", lambda i: cached.decide(request(i)), 20_000),
    ]
    rows = [(name, measure(call, iterations)) for name, call, iterations in cases]
    baseline = rows[0][1][0]

    print(
        f"tenant: {ROLES} roles, {BINDINGS} bindings, {2 * REGO_MODULES} Rego rules "
        f"in {REGO_MODULES} modules, {TEAMS} budgets"
    )
    print(f"{'per decision':<42}{'median µs':>11}{'p99 µs':>10}{'vs baseline':>13}")
    for name, (median, p99) in rows:
        print(f"{name:<42}{median:>11.1f}{p99:>10.1f}{baseline / median:>11.1f}x")
    print(f"RBAC agreement with casbin on 2,000 requests: {agreement}/2000")
    hits = cached._abac_cache.hits / max(1, cached._abac_cache.hits + cached._abac_cache.misses)
    print(f"ABAC cache hit rate in the cached runs: {hits:.0%} ({len(cached._abac_cache)} entries)")
    print()
    print(f"{'one-off':<42}{'ms':>11}")
    for name, ms in [
        ("parse YAML (10k bindings)", parse_ms),
        ("validate set (incl. Rego checks)", set_ms),
        ("compile", compile_ms),
        ("build + sign bundle (EdDSA)", sign_ms),
        ("verify bundle", verify_ms),
        ("engine from bundle (index + Rego)", engine_ms),
        ("pycasbin enforcer load", casbin_ms),
    ]:
        print(f"{name:<42}{ms:>11.1f}")
    data_kib = len(compiled.data_json()) / 1024
    print(f"bundle size: {len(bundle) / 1024:.1f} KiB gzipped (data.json {data_kib:.1f} KiB)")
