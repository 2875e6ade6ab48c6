"""The studio's API types (`control_plane/ui/src/api/schema.d.ts`) are generated from the
control plane's OpenAPI document by `npm run gen:api`; they must be what the API serves now,
or the studio compiles against an API that no longer exists (a field added, a schema
renamed). This regenerates them with the UI's pinned openapi-typescript and compares."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from control_plane.app import create_app

UI = Path(__file__).resolve().parents[2] / "control_plane" / "ui"
GENERATOR = UI / "node_modules" / ".bin" / "openapi-typescript"


def test_the_studios_api_types_are_the_apis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not GENERATOR.exists():
        pytest.fail(
            "the studio's packages are not installed: `make ui` (or `npm ci` in control_plane/ui)"
        )
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(create_app().openapi()))
    fresh = tmp_path / "schema.d.ts"
    subprocess.run(
        [str(GENERATOR), str(document), "-o", str(fresh)],
        cwd=UI,
        check=True,
        capture_output=True,
        timeout=120,
    )
    committed = (UI / "src" / "api" / "schema.d.ts").read_text()
    assert fresh.read_text() == committed, (
        "the API changed since src/api/schema.d.ts was generated: run `npm run gen:api` in "
        "control_plane/ui and commit the result"
    )
