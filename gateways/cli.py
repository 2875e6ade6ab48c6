"""`kaizen-studio gateway` (run the gateway) and `kaizen-studio call NAME [--pipeline] --input
TEXT`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

DEFAULT_GATEWAY = "http://127.0.0.1:10000"  # Envoy in front of the gateway (`kaizen-studio up`)


def register(sub: Any) -> None:
    gateway_help = "run the gateway (agents and pipelines over HTTP API and MCP)"
    gateway = sub.add_parser("gateway", help=gateway_help, description=gateway_help)
    gateway.add_argument("--host", help="bind address (default: KAIZEN_GATEWAY_HOST or 127.0.0.1)")
    gateway.add_argument("--port", type=int, help="port (default: KAIZEN_GATEWAY_PORT or 8080)")
    gateway.set_defaults(func=cmd_gateway)

    call_help = "call a deployed agent (or run a pipeline) through the gateway; print its output"
    call = sub.add_parser("call", help=call_help, description=call_help)
    call.add_argument(
        "agent", metavar="NAME", help="the agent's (or, with --pipeline, pipeline's) name"
    )
    call.add_argument("--pipeline", action="store_true", help="NAME is a pipeline: run it")
    call.add_argument("--input", required=True, help="the input (text, or JSON with --json)")
    call.add_argument("--json", action="store_true", help="parse --input as JSON")
    call.add_argument(
        "--gateway",
        default=None,
        help=f"gateway URL (default: KAIZEN_GATEWAY_URL or {DEFAULT_GATEWAY})",
    )
    call.add_argument("--api-key", default=None, help="API key ks_… (default: KAIZEN_API_KEY)")
    call.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    call.set_defaults(func=cmd_call)


def cmd_gateway(args: argparse.Namespace) -> int:

    import uvicorn
    from policy.runtime import tracing
    from policy.runtime.heap import settle_heap
    from policy.runtime.logs import configure_logging
    from pydantic import ValidationError

    from gateways.app import create_app
    from gateways.deployments import BundleFloor, DeploymentError, deployment_source
    from gateways.errors import ProviderError
    from gateways.settings import GatewaySettings
    from gateways.tenancy import shared_or_dedicated

    try:
        overrides = {
            k: v for k, v in (("gateway_host", args.host), ("gateway_port", args.port)) if v
        }
        settings = GatewaySettings(**overrides)
        source = shared_or_dedicated(settings) or deployment_source(
            bundle=settings.gateway_bundle,
            jwks=settings.gateway_jwks,
            scope=settings.gateway_bundle_scope,
            gateway_id=settings.gateway_id,
            state_dir=settings.state_dir,
            control_plane_url=settings.control_plane_url,
            token=settings.gateway_token.get_secret_value(),
            floor=BundleFloor(settings.bundle_min_revision, settings.not_before_seconds),
            allow_insecure=settings.allow_insecure_control_plane,
        )
    except ValidationError as exc:
        missing = ", ".join("KAIZEN_" + str(e["loc"][0]).upper() for e in exc.errors())
        print(f"kaizen-studio gateway: invalid or missing setting(s): {missing}", file=sys.stderr)
        return 2
    except DeploymentError as exc:
        print(f"kaizen-studio gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging("gateway", settings.log_level, json_format=settings.log_json)
    try:
        tracing.configure("kaizen-gateway")
    except tracing.TracingConfigError as exc:
        print(f"kaizen-studio gateway: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings, source)
    except ProviderError as exc:  # the secrets backend's settings (Vault address, credential)
        print(f"kaizen-studio gateway: {exc.message}", file=sys.stderr)
        return 2
    settle_heap()
    # uvloop and httptools (both pinned) named, not left to "auto": a missing one fails here
    # instead of silently serving on asyncio's loop and the pure-Python h11 parser.
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        loop="uvloop",
        http="httptools",
    )
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    gateway = (args.gateway or os.environ.get("KAIZEN_GATEWAY_URL") or DEFAULT_GATEWAY).rstrip("/")
    api_key = args.api_key or os.environ.get("KAIZEN_API_KEY")
    value: Any = args.input
    if args.json:
        try:
            value = json.loads(args.input)
        except ValueError as exc:
            print(f"--input is not JSON: {exc}", file=sys.stderr)
            return 2
    headers = {"x-kaizen-channel": "cli", "accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    url = (
        f"{gateway}/v1/pipelines/{args.agent}/run"
        if args.pipeline
        else f"{gateway}/v1/agents/{args.agent}/invoke"
    )
    try:
        response = httpx.post(url, json={"input": value}, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"cannot reach the gateway at {gateway}: {type(exc).__name__}", file=sys.stderr)
        return 1
    return _print_result(response, api_key is not None)


def _print_result(response: httpx.Response, had_key: bool) -> int:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200:
        output = body.get("output")
        print(output if isinstance(output, str) else json.dumps(output, indent=2))
        return 0
    if response.status_code == 401:
        hint = (
            "the API key was not accepted (revoked, expired or mistyped?)"
            if had_key
            else "no credential: pass --api-key ks_… or set KAIZEN_API_KEY"
        )
        print(f"401 unauthenticated: {hint}", file=sys.stderr)
        return 3
    if response.status_code == 403:
        reasons = "; ".join(body.get("reasons") or []) or _message(body)
        if body.get("outcome") == "require_approval":
            print(
                f"403 approval required: {reasons}\n"
                f"approval request: {body.get('approval_request_id')}; once approved, "
                "retry with the grant in X-Kaizen-Approval",
                file=sys.stderr,
            )
        else:
            print(f"403 denied: {reasons}", file=sys.stderr)
        return 4
    print(f"{response.status_code}: {_message(body) or response.text[:500]}", file=sys.stderr)
    return 1


def _message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(error or "")
