"""`kaizen-studio call`: what it sends and what it prints, against a local stand-in of the
proxy in front of the gateway (answers as Envoy + sidecar + gateway would)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kaizen_studio.cli import main
from tests.fake_llm import ServedApp

SEEN: list[dict[str, Any]] = []


async def invoke(request: Request) -> JSONResponse:
    body = await request.json()
    SEEN.append({"headers": dict(request.headers), "body": body, "path": request.url.path})
    key = request.headers.get("authorization", "")
    if not key:
        return JSONResponse({"outcome": "deny", "reasons": ["no credential"]}, 401)
    if key == "Bearer ks_denied":
        return JSONResponse({"outcome": "deny", "reasons": ["no permission for agent:x"]}, 403)
    if key == "Bearer ks_approval":
        body = {"outcome": "require_approval", "reasons": ["prod"], "approval_request_id": "ar1"}
        return JSONResponse(body, 403)
    return JSONResponse({"output": f"echo {body['input']}", "execution_id": "e1"})


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    served = ServedApp(
        Starlette(
            routes=[
                Route("/v1/agents/{name}/invoke", invoke, methods=["POST"]),
                Route("/v1/pipelines/{name}/run", invoke, methods=["POST"]),
            ]
        ),
        lifespan="off",
    )
    yield served.url
    served.stop()


def test_call_prints_the_output_and_sends_the_cli_channel(
    proxy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["call", "bot", "--input", "hi there", "--gateway", proxy, "--api-key", "ks_ok"])
    assert code == 0
    assert capsys.readouterr().out == "echo hi there\n"
    assert SEEN[-1]["headers"]["x-kaizen-channel"] == "cli"
    assert SEEN[-1]["headers"]["authorization"] == "Bearer ks_ok"


def test_call_runs_a_pipeline_with_the_pipeline_flag(
    proxy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["call", "flow", "--pipeline", "--input", "go", "--gateway", proxy, "--api-key", "ks"]
    assert main(argv) == 0
    assert SEEN[-1]["path"] == "/v1/pipelines/flow/run"
    assert SEEN[-1]["headers"]["x-kaizen-channel"] == "cli"
    assert capsys.readouterr().out == "echo go\n"


def test_call_takes_json_input_and_the_key_from_the_environment(
    proxy: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZEN_API_KEY", "ks_env")
    assert main(["call", "bot", "--json", "--input", '{"a": 1}', "--gateway", proxy]) == 0
    assert SEEN[-1]["body"] == {"input": {"a": 1}}
    assert SEEN[-1]["headers"]["authorization"] == "Bearer ks_env"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("key", "code", "message"),
    [
        (None, 3, "no credential: pass --api-key"),
        ("ks_denied", 4, "403 denied: no permission for agent:x"),
        ("ks_approval", 4, "approval request: ar1"),
    ],
)
def test_call_explains_refusals(
    proxy: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
    code: int,
    message: str,
) -> None:
    monkeypatch.delenv("KAIZEN_API_KEY", raising=False)
    args = ["call", "bot", "--input", "x", "--gateway", proxy]
    assert main(args + (["--api-key", key] if key else [])) == code
    assert message in capsys.readouterr().err


def test_call_reports_an_unreachable_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "bot", "--input", "x", "--gateway", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the gateway" in capsys.readouterr().err


def test_gateway_refuses_to_start_without_its_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIZEN_GATEWAY_TOKEN", raising=False)
    assert main(["gateway"]) == 2
    assert "KAIZEN_GATEWAY_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("KAIZEN_GATEWAY_TOKEN", "kgw_" + "x" * 30)
    monkeypatch.setenv("KAIZEN_GATEWAY_BUNDLE", "/nowhere/bundle.tar.gz")
    monkeypatch.delenv("KAIZEN_GATEWAY_JWKS", raising=False)
    assert main(["gateway"]) == 2  # static deployments need the bundle and its JWKS
    assert "KAIZEN_GATEWAY_JWKS" in capsys.readouterr().err


def test_a_shared_gateway_with_vault_but_no_address_refuses_to_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))
    monkeypatch.setenv("KAIZEN_GATEWAY_TOKEN", "kgp_" + "x" * 40)  # a platform credential
    monkeypatch.delenv("KAIZEN_GATEWAY_BUNDLE", raising=False)
    monkeypatch.setenv("KAIZEN_SECRETS_BACKEND", "vault")
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monkeypatch.delenv("KAIZEN_VAULT_ADDR", raising=False)
    assert main(["gateway"]) == 2
    assert "KAIZEN_SECRETS_BACKEND=vault needs VAULT_ADDR" in capsys.readouterr().err
