"""The studio's role list is generated from the API (`npm run gen:api` writes
control_plane/ui/src/api/roles.ts from the OpenAPI document): it must name exactly the
API's roles, in the API's order (most privileged first; the studio ranks by it)."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

from control_plane.app import create_app
from control_plane.schemas.identity import Role

GENERATED = Path(__file__).resolve().parents[2] / "control_plane/ui/src/api/roles.ts"


def test_the_studios_roles_are_the_apis_in_its_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))
    match = re.search(r"export const ROLES = (\[.*?\]) as const;", GENERATED.read_text())
    assert match, "roles.ts lost its generated ROLES: run `npm run gen:api`"
    listed = json.loads(match.group(1))
    served = create_app().openapi()["components"]["schemas"]["Member"]["properties"]["role"]
    assert listed == served["enum"] == list(typing.get_args(Role)), (
        "the API's roles changed: run `npm run gen:api` in control_plane/ui"
    )
