"""Property-based fuzzing of every operation in `/openapi.json` (schemathesis) against a
real control-plane process on PostgreSQL and Redis: whatever the input, never a 5xx, and
every answer matches the documented schema."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.conftest import PASSWORD, REDIS_PREFIX, PostgresDatabases
from tests.e2e.test_up import _kaizen_studio, free_port


@pytest.fixture(scope="module")
async def fuzz_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create("fuzz")


@pytest.fixture(scope="module")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, fuzz_database: str, redis_url: str
) -> Iterator[tuple[str, dict[str, str]]]:
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
        key = httpx.post(
            f"{url}/api/v1/api-keys", json={"name": "fuzzer", "role": "owner"}, headers=owner
        ).json()["key"]
        yield url, {"Authorization": f"Bearer {key}"}
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert "Traceback" not in log.read_text(), log.read_text()


def test_no_input_makes_the_api_fail(control_plane: tuple[str, dict[str, str]]) -> None:
    url, auth = control_plane
    api = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("KAIZEN_FUZZ_EXAMPLES", "30")),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            headers = {"Authorization": auth["Authorization"], **(case.headers or {})}
            case.call_and_validate(
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        try:
            fuzz()
        except Exception as failure:  # collect every operation's failure, then report all
            failures[operation.label] = str(failure)[:2000]
    assert operations >= 25
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
