"""`kaizen-studio`: run the product, its runtimes, migrations and offline policy work."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence

from control_plane.settings import Settings
from kaizen_studio import backup as backup_cli
from kaizen_studio import platform_cli, remote_cli
from policy import cli as policy_cli
from policy.runtime import tracing
from policy.runtime.heap import settle_heap


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in (("cp_host", args.host), ("cp_port", args.port)) if v}
    return Settings(**overrides)


def _serve(settings: Settings) -> int:
    import uvicorn

    from control_plane.app import create_app
    from control_plane.observability import configure_logging

    configure_logging(settings.log_level, json_format=settings.log_json)
    try:
        tracing.configure("kaizen-control-plane")
    except tracing.TracingConfigError as exc:
        print(f"kaizen-studio control-plane: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    settle_heap()
    # Long-polls and streams are cut after 5 s on shutdown: sidecars and gateways reconnect.
    uvicorn.run(
        app,
        host=settings.cp_host,
        port=settings.cp_port,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from kaizen_studio.up import run

    envoy_port = args.envoy_port or int(os.environ.get("KAIZEN_ENVOY_PORT", "10000"))
    return run(_settings(args), envoy_port=envoy_port)


def cmd_control_plane(args: argparse.Namespace) -> int:
    return _serve(_settings(args))


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from control_plane.db.migrate import upgrade
    from control_plane.db.session import Database

    settings = Settings()
    if settings.is_sqlite:
        settings.home.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade(db, args.revision)
        finally:
            await db.dispose()

    asyncio.run(run())
    print(f"database at revision {args.revision}")
    return 0


def cmd_db_expire_decisions(_args: argparse.Namespace) -> int:
    from control_plane.db.migrate import upgrade
    from control_plane.db.session import Database
    from control_plane.services.decision_retention import ExpiryReport, expire

    settings = Settings()

    async def run() -> ExpiryReport:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade(db)
            return await expire(db)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    print(
        f"expired {report.deleted} decision(s) of {report.organizations} organisation(s); "
        f"dropped partitions: {', '.join(report.dropped_partitions) or 'none'}"
    )
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from control_plane.db.migrate import upgrade
    from control_plane.db.session import Database
    from control_plane.errors import NotFound
    from control_plane.services import policies
    from control_plane.services.audit import Actor
    from control_plane.services.bundle_events import BundleEvents
    from control_plane.services.crypto import load_master_key
    from control_plane.services.keys import KeyRing

    settings = Settings()
    only: uuid.UUID | None = None
    if args.organization is not None:
        try:
            only = uuid.UUID(args.organization)
        except ValueError:
            print(
                f"--organization {args.organization!r} is not an organisation id", file=sys.stderr
            )
            return 2

    async def run() -> tuple[str | None, int, list[tuple[uuid.UUID, int]]]:
        db = Database(settings.resolved_database_url)
        events = BundleEvents(settings.redis_url, prefix=settings.redis_prefix)
        try:
            await upgrade(db)
            ring = KeyRing(
                db, load_master_key(settings), max_token_ttl=settings.access_token_ttl_seconds
            )
            await ring.reload()
            why = "bundle signing key rotated"
            if only is not None:
                await ring.rotate_organization(only)
                async with db.session(only) as session:
                    actor = Actor("system", None, "kaizen-studio", None, None)
                    row = await policies.refresh(
                        session, only, actor, ring, why=why, issuer=settings.issuer
                    )
                refreshed = [(only, row.revision)] if row is not None else []
                kid, count = None, 1
            else:
                kid = await ring.rotate()
                count = len(await ring.rotate_every_organization())
                refreshed = await policies.refresh_everywhere(
                    db,
                    ring,
                    why=f"signing keys rotated (platform key {kid})",
                    issuer=settings.issuer,
                )
            for organization_id, revision in refreshed:
                await events.notify(str(organization_id), revision)
            return kid, count, refreshed
        finally:
            await events.close()
            await db.dispose()

    try:
        kid, count, refreshed = asyncio.run(run())
    except NotFound as exc:
        print(f"keys rotate: {exc}", file=sys.stderr)
        return 2
    if kid is not None:
        print(f"new platform signing key {kid} (access tokens, approval grants)")
    print(f"new bundle signing key for {count} organisation(s); previous keys stay published")
    print("until their tokens expire")
    print(f"re-signed the published bundle of {len(refreshed)} organisation(s)")
    return 0


def cmd_secrets_rotate_master_key(_args: argparse.Namespace) -> int:
    from control_plane.db.migrate import upgrade
    from control_plane.db.session import Database
    from control_plane.services import secrets

    settings = Settings()

    async def run() -> secrets.Rotation:
        db = Database(settings.resolved_database_url)
        vault = secrets.VaultClient.from_settings(settings) if settings.vault_transit_key else None
        try:
            await upgrade(db)
            envelope = secrets.envelope_for(settings, vault)
            return await secrets.rewrap_all(db, envelope, secrets.master_keys(settings))
        finally:
            if vault is not None:
                await vault.close()
            await db.dispose()

    rotation = asyncio.run(run())
    print(f"every data key is now wrapped by {rotation.key_id}")
    print(
        f"rewrapped {rotation.secrets} secret(s); re-sealed {rotation.signing_keys} signing "
        f"key(s) and {rotation.totp_secrets} TOTP secret(s)"
    )
    print("the previous master key is no longer needed; remove KAIZEN_MASTER_KEY_PREVIOUS")
    return 0


def cmd_org_set_plan(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from control_plane.db.migrate import upgrade
    from control_plane.db.models import Organization
    from control_plane.db.session import SYSTEM, Database
    from control_plane.errors import Invalid, KaizenError
    from control_plane.services.audit import Actor
    from control_plane.services.bundle_events import BundleEvents
    from control_plane.services.crypto import load_master_key
    from control_plane.services.keys import KeyRing
    from control_plane.services.plans import catalogue, changes

    settings = Settings()

    async def organization_id(db: Database) -> uuid.UUID:
        try:
            return uuid.UUID(args.organization)
        except ValueError:
            pass
        async with db.session(SYSTEM) as session:
            found = list(
                await session.scalars(
                    select(Organization.id).where(Organization.name == args.organization)
                )
            )
        if len(found) != 1:
            why = "no organisation" if not found else f"{len(found)} organisations"
            raise Invalid(
                f"{why} named {args.organization!r}; give the organisation's id",
                details=[{"field": "ORG"}],
            )
        return found[0]

    async def run() -> changes.PlanChange:
        db = Database(settings.resolved_database_url)
        events = BundleEvents(settings.redis_url, prefix=settings.redis_prefix)
        try:
            await upgrade(db)
            overrides = catalogue.parse_limit_arguments(args.limit or [])
            org = await organization_id(db)
            ring = KeyRing(
                db, load_master_key(settings), max_token_ttl=settings.access_token_ttl_seconds
            )
            await ring.reload()
            actor = Actor("system", None, "kaizen-studio org set-plan", None, None)
            async with db.session(org) as session:
                change = await changes.set_plan(
                    session,
                    org,
                    actor,
                    args.plan,
                    overrides,
                    keys=ring,
                    issuer=settings.issuer,
                )
            if change.revision is not None:
                await events.notify(str(org), change.revision)
            return change
        finally:
            await events.close()
            await db.dispose()

    try:
        change = asyncio.run(run())
    except KaizenError as exc:
        print(f"org set-plan: {exc.message}", file=sys.stderr)
        return 2
    limits = ", ".join(
        f"{name} {'unlimited' if value is None else value}"
        for name, value in change.after.limits.items()
    )
    print(f"{change.before.plan.title} -> {change.after.plan.title}: {limits}")
    if change.revision is not None:
        print(f"bundle revision {change.revision} carries the new limits to the sidecars")
    else:
        print("nothing is published yet: the first publish carries the limits")
    return 0


def cmd_sidecar(args: argparse.Namespace) -> int:
    from authz_sidecar.settings import SidecarSettings  # noqa: TID251
    from authz_sidecar.supervisor import serve  # noqa: TID251  (the launcher starts each runtime)

    options = (
        ("sidecar_host", args.host),
        ("sidecar_grpc_port", args.grpc_port),
        ("sidecar_http_port", args.http_port),
        ("sidecar_workers", args.workers),
        ("sidecar_bundle", args.bundle),
        ("sidecar_jwks", args.jwks),
    )
    return serve(SidecarSettings(**{k: v for k, v in options if v is not None}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaizen-studio",
        description="Kaizen Studio: the authorization control plane for AI agents.",
        epilog="Configuration comes from KAIZEN_* environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, func, help_text in (
        (
            "up",
            cmd_up,
            "run everything on this machine with embedded defaults: control plane, sidecar, "
            "gateway and Envoy, with a demo organisation on first run",
        ),
        ("control-plane", cmd_control_plane, "run the control plane alone"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--host", help="bind address (default: KAIZEN_CP_HOST or 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default: KAIZEN_CP_PORT or 8000)")
        if name == "up":
            p.add_argument(
                "--envoy-port",
                type=int,
                help="where Envoy listens for gateway calls (default: KAIZEN_ENVOY_PORT or "
                "10000); the sidecar and gateway take KAIZEN_SIDECAR_GRPC_PORT/"
                "KAIZEN_SIDECAR_HTTP_PORT (9191/9192) and KAIZEN_GATEWAY_PORT (8080)",
            )
        p.set_defaults(func=func)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    up = db.add_parser("upgrade", help="apply Alembic migrations (default: to the newest)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    db.add_parser(
        "expire-decisions",
        help="remove decisions older than each organisation's retention (run daily)",
    ).set_defaults(func=cmd_db_expire_decisions)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    rotate = keys.add_parser(
        "rotate",
        help="start signing with new keys (the platform's and every organisation's bundle key, "
        "or one organisation's); old ones verify until they expire",
    )
    rotate.add_argument(
        "--organization", metavar="ID", help="rotate only this organisation's bundle key"
    )
    rotate.set_defaults(func=cmd_keys_rotate)

    secrets_cli = sub.add_parser("secrets", help="the secrets store").add_subparsers(
        dest="secrets_command", required=True, metavar="ACTION"
    )
    rotate_help = (
        "rewrap every data key (and re-seal the signing keys) under KAIZEN_MASTER_KEY (or the "
        "Vault transit key); the old key comes from KAIZEN_MASTER_KEY_PREVIOUS(_FILE)"
    )
    secrets_cli.add_parser(
        "rotate-master-key", help=rotate_help, description=rotate_help
    ).set_defaults(func=cmd_secrets_rotate_master_key)

    org = sub.add_parser("org", help="organisations (operator)").add_subparsers(
        dest="org_command", required=True, metavar="ACTION"
    )
    set_plan_help = (
        "put an organisation on a plan (free, pro, enterprise); Enterprise takes its own "
        "limits (--limit gateways=10 --limit agents=unlimited). Refused, changing nothing, "
        "when the organisation is already over a limit of the new plan"
    )
    set_plan = org.add_parser("set-plan", help=set_plan_help, description=set_plan_help)
    set_plan.add_argument("organization", metavar="ORG", help="organisation id or exact name")
    set_plan.add_argument("plan", metavar="PLAN", help="free | pro | enterprise")
    set_plan.add_argument(
        "--limit",
        action="append",
        metavar="NAME=VALUE",
        help="users, agents, gateways or executions_per_month: a number or unlimited",
    )
    set_plan.set_defaults(func=cmd_org_set_plan)

    sidecar_help = "run the authz sidecar (Envoy ext_authz gRPC + HTTP /authz)"
    sidecar = sub.add_parser("sidecar", help=sidecar_help, description=sidecar_help)
    sidecar.add_argument("--host", help="bind address (default: KAIZEN_SIDECAR_HOST or 127.0.0.1)")
    sidecar.add_argument("--grpc-port", type=int, help="default: KAIZEN_SIDECAR_GRPC_PORT or 9191")
    sidecar.add_argument("--http-port", type=int, help="default: KAIZEN_SIDECAR_HTTP_PORT or 9192")
    sidecar.add_argument(
        "--workers",
        type=int,
        help="default with Redis: the CPUs this process may use (affinity, cgroup quota); else 1",
    )
    sidecar.add_argument("--bundle", help="static mode: a signed bundle.tar.gz to serve")
    sidecar.add_argument("--jwks", help="the JWKS verifying --bundle (or pinned in sync mode)")
    sidecar.set_defaults(func=cmd_sidecar)

    backup_cli.register(sub)  # `backup DIR`, `restore DIR`
    platform_cli.register(sub)  # `platform-gateway create|place`
    policy = policy_cli.register(
        sub
    )  # `policy validate|test|compile`, `bundle build|verify|keygen`
    remote_cli.register(sub, policy)  # `login`, `policy push|replay|publish`
    remote_cli.extend_test(policy.choices["test"])  # `policy test --remote`
    from gateways import cli as gateway_cli  # noqa: TID251  (the launcher starts each runtime)

    gateway_cli.register(sub)  # `gateway`, `call AGENT --input TEXT`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
