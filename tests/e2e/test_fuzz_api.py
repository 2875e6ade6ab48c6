"""Property-based fuzzing of every operation in `/openapi.json` (schemathesis) against a
real control-plane process on PostgreSQL and Redis: whatever the input and whichever
credential sends it, never a 5xx, and every answer matches the documented schema.

Three credentials, each where it can reach: an owner API key and a viewer API key on every
member and public operation, and a gateway credential on the gateway-facing ones (decision,
OPA and execution ingest, status reports, grant redemption), so their bodies are fuzzed past
authentication — the test fails if the gateway credential never gets past a 401. Then a
stateful run follows the links schemathesis infers between operations (create → read →
update → delete), checking also that a created object can be read and a deleted one cannot.

Sizes: `KAIZEN_FUZZ_EXAMPLES` examples per operation and credential (default 25, the CI
size; `make fuzz-nightly` runs 1,000) and `KAIZEN_FUZZ_STATEFUL` stateful scenarios.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky, FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_schema_conformance,
    use_after_free,
)

from control_plane.app import create_app
from tests.conftest import PASSWORD, REDIS_PREFIX, PostgresDatabases, make_settings
from tests.e2e.test_up import _kaizen_studio, free_port
from tests.integration.walker_support import GATEWAY, PLATFORM, PUBLIC, operations

EXAMPLES = int(os.environ.get("KAIZEN_FUZZ_EXAMPLES", "25"))
STATEFUL = int(os.environ.get("KAIZEN_FUZZ_STATEFUL", "15"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
Credentials = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
async def fuzz_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create("fuzz")


@pytest.fixture(scope="module")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, fuzz_database: str, redis_url: str
) -> Iterator[tuple[str, Credentials]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env.update(
        KAIZEN_HOME=str(tmp_path_factory.mktemp("fuzz")),
        KAIZEN_DATABASE_URL=fuzz_database,
        KAIZEN_REDIS_URL=redis_url,
        KAIZEN_REDIS_PREFIX=REDIS_PREFIX + "fuzz:",
        KAIZEN_LOGIN_ATTEMPTS_PER_WINDOW="1000",
    )
    log = Path(env["KAIZEN_HOME"]) / "control-plane.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [_kaizen_studio(), "control-plane", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"control plane did not start: {log.read_text()}")
        signup = httpx.post(
            f"{url}/api/v1/auth/signup",
            json={"email": "fuzz@example.com", "password": PASSWORD, "organization": "Fuzz"},
        ).json()
        owner = {"Authorization": f"Bearer {signup['access_token']}"}
        credentials: Credentials = {}
        for role in ("owner", "viewer"):
            key = httpx.post(
                f"{url}/api/v1/api-keys", json={"name": f"fuzz-{role}", "role": role}, headers=owner
            ).json()["key"]
            credentials[role] = {"Authorization": f"Bearer {key}"}
        gateway = httpx.post(
            f"{url}/api/v1/gateways",
            json={"name": "fuzz-edge", "environment": "prod", "url": "http://gw.test:8080"},
            headers=owner,
        ).json()
        credentials["gateway"] = {"Authorization": f"Bearer {gateway['credential']}"}
        # The operator's shared platform gateway, serving the fuzzed organisation (ADR 0012).
        said = subprocess.run(
            [_kaizen_studio(), "platform-gateway", "create", "fuzz-shared", "--url", url],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        platform = said.rsplit(": ", 1)[1].strip()
        subprocess.run(
            [_kaizen_studio(), "platform-gateway", "place", "Fuzz", "fuzz-shared"],
            env=env,
            capture_output=True,
            check=True,
        )
        credentials["platform"] = {"Authorization": f"Bearer {platform}"}
        yield url, credentials
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert "Traceback" not in log.read_text(), log.read_text()


def _who_may_call() -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, path) -> the credentials that fuzz it, from the routes' own dependencies."""
    app = create_app(make_settings(Path(tempfile.mkdtemp(prefix="kaizen-fuzz-schema-"))))
    plan: dict[tuple[str, str], tuple[str, ...]] = {}
    for operation in operations(app):
        if operation.auth == GATEWAY:
            plan[(operation.method, operation.path)] = ("gateway",)
        elif operation.auth == PLATFORM:
            plan[(operation.method, operation.path)] = ("platform",)
        elif operation.auth == PUBLIC:
            plan[(operation.method, operation.path)] = ("owner",)
        else:
            plan[(operation.method, operation.path)] = ("owner", "viewer")
    return plan


def _examples(credential: str) -> int:
    # The gateway-facing operations are few and take the richest bodies; a viewer mostly
    # meets 403s, so it gets a third.
    return {"gateway": 2 * EXAMPLES, "platform": 2 * EXAMPLES, "viewer": max(5, EXAMPLES // 3)}.get(
        credential, EXAMPLES
    )


def _fuzzer(
    operation: Any, auth: dict[str, str], seen: Counter[int], examples: int
) -> Callable[[], None]:
    """A hypothesis test of `operation` sending `auth`, counting the answers in `seen`."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(headers={**dict(case.headers or {}), **auth})
        seen[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    return fuzz  # type: ignore[no-any-return]


def test_no_input_makes_the_api_fail(control_plane: tuple[str, Credentials]) -> None:
    url, credentials = control_plane
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    plan = _who_may_call()
    failures: dict[str, str] = {}
    statuses: dict[tuple[str, str], Counter[int]] = {}
    for result in api.get_all_operations():
        operation = result.ok()
        for credential in plan[(operation.method.upper(), operation.path)]:
            seen = statuses.setdefault((credential, operation.label), Counter())

            fuzz = _fuzzer(operation, credentials[credential], seen, _examples(credential))
            try:
                fuzz()
            except Exception as failure:  # collect every operation's failure, then report all
                failures[f"{credential} {operation.label}"] = str(failure)[:2000]
    by_credential = Counter(credential for credential, _ in statuses)
    calls = Counter[str]()
    for (credential, _), seen in statuses.items():
        calls[credential] += sum(seen.values())
    print(f"\nfuzzed: operations per credential {dict(by_credential)}, calls {dict(calls)}")
    # Positive control: every gateway-facing operation was reached past authentication.
    stuck = [
        f"{credential} {label}"
        for (credential, label), seen in statuses.items()
        if credential in ("gateway", "platform") and set(seen) <= {401}  # or never called
    ]
    assert not stuck, f"the gateway credentials never got past a 401 at {stuck}"
    assert by_credential["gateway"] >= 5
    assert len(plan) == sum(1 for _ in api.get_all_operations())
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_stateful_sequences_never_make_the_api_fail(
    control_plane: tuple[str, Credentials],
) -> None:
    """Sequences along the links schemathesis infers from the schema (an id a create answers
    is the path of the next read, update or delete), with the owner's key."""
    url, credentials = control_plane
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    workflow = api.as_state_machine()
    assert len(workflow.bundles) >= 20, "schemathesis inferred almost no links"
    checks = [*CHECKS, use_after_free, ensure_resource_availability]
    steps = Counter[int]()

    class OwnerWorkflow(workflow):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": {**dict(case.headers or {}), **credentials["owner"]}}

        def validate_response(
            self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any
        ) -> None:
            steps[response.status_code] += 1
            case.validate_response(response, checks=checks)

    # The API's state changes under Hypothesis (a bundle filled by one run is empty on the
    # next), so its data tree may report a "flaky" strategy; schemathesis's own engine starts
    # a fresh run then, and so does this. A check that fails is never retried.
    restarts = 0
    while sum(steps.values()) < STATEFUL * 5 and restarts < 5:
        try:
            OwnerWorkflow.run(
                settings=settings(
                    max_examples=STATEFUL,
                    stateful_step_count=10,
                    phases=[Phase.generate],
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
            )
        except (Flaky, FlakyStrategyDefinition):
            restarts += 1
    print(
        f"\nstateful: {len(workflow.bundles)} link targets, {restarts} restart(s), "
        f"answers by status {dict(steps)}"
    )
    assert sum(steps.values()) >= STATEFUL * 5
