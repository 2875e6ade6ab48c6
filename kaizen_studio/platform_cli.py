"""`kaizen-studio platform-gateway create|place`: the operator's shared gateways (ADR 0012).

A platform gateway is the operator's, never a tenant's: it is registered here, on the
control plane's own database, not through the tenant API. Its `kgp_…` credential is
printed once (stored as SHA-256); organisations on a shared-gateway plan (Free) are placed
on it at sign-up, and `place` puts an existing organisation on one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def _run(work: Any) -> tuple[int, Any]:
    from control_plane.db.migrate import upgrade
    from control_plane.db.session import Database
    from control_plane.errors import KaizenError
    from control_plane.settings import Settings

    settings = Settings()

    async def run() -> Any:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    try:
        return 0, asyncio.run(run())
    except KaizenError as exc:
        print(f"platform-gateway: {exc.message}", file=sys.stderr)
        return 2, None


def cmd_create(args: argparse.Namespace) -> int:
    from control_plane.db.session import SYSTEM, Database
    from control_plane.services import platform_gateways

    async def work(db: Database) -> tuple[str, str]:
        async with db.session(SYSTEM) as session:
            gateway, credential = await platform_gateways.create(
                session, name=args.name, url=args.url
            )
            return str(gateway.id), credential

    code, created = _run(work)
    if code:
        return code
    gateway_id, credential = created
    print(f"platform gateway {args.name} ({gateway_id})")
    print(f"credential (shown once; KAIZEN_PLATFORM_TOKEN of its sidecars): {credential}")
    return 0


def cmd_place(args: argparse.Namespace) -> int:
    from control_plane.db.session import SYSTEM, Database
    from control_plane.services import platform_gateways
    from control_plane.services.audit import Actor

    async def work(db: Database) -> str:
        async with db.session(SYSTEM) as session:
            organization_id = await platform_gateways.organization_named(session, args.organization)
            gateway = await platform_gateways.named(session, args.gateway)
        actor = Actor("system", None, "kaizen-studio platform-gateway place", None, None)
        async with db.session(organization_id) as session:
            gateway = await platform_gateways.named(session, args.gateway)
            await platform_gateways.place(session, organization_id, gateway, actor)
        return str(organization_id)

    code, organization_id = _run(work)
    if code:
        return code
    print(f"organisation {organization_id} is served by platform gateway {args.gateway}")
    return 0


def register(sub: Any) -> None:
    parent = sub.add_parser(
        "platform-gateway", help="the operator's shared gateways serving many organisations"
    ).add_subparsers(dest="platform_command", required=True, metavar="ACTION")
    create_help = "register a shared platform gateway and print its credential once"
    create = parent.add_parser("create", help=create_help, description=create_help)
    create.add_argument("name", metavar="NAME")
    create.add_argument("--url", required=True, help="where callers reach it (https://…)")
    create.set_defaults(func=cmd_create)
    place_help = "serve an organisation from a platform gateway (its decisions go there)"
    place = parent.add_parser("place", help=place_help, description=place_help)
    place.add_argument("organization", metavar="ORG", help="organisation id or exact name")
    place.add_argument("gateway", metavar="GATEWAY", help="the platform gateway's name")
    place.set_defaults(func=cmd_place)
