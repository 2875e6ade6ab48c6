"""The studio is served at `/` without ever shadowing the API, its docs, keys or probes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from control_plane.app import install_error_handlers
from control_plane.settings import Settings
from control_plane.ui_assets import mount_ui


def _app(dist: Path) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/api/v1/things")
    async def things() -> dict[str, list[str]]:
        return {"items": []}

    @app.post("/api/v1/auth/login")
    async def login() -> dict[str, str]:
        return {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    mount_ui(app, Settings(home=dist.parent), dist=dist)
    return app


@pytest.fixture
def built(tmp_path: Path) -> Iterator[TestClient]:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=root></div>")
    (dist / "assets" / "index-abc.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside dist")
    with TestClient(_app(dist)) as client:
        yield client


def test_serves_the_app_and_its_assets(built: TestClient) -> None:
    index = built.get("/")
    assert index.status_code == 200
    assert "id=root" in index.text
    assert "script-src 'self'" in index.headers["content-security-policy"]
    asset = built.get("/assets/index-abc.js")
    assert asset.text == "console.log(1)"
    assert "immutable" in asset.headers["cache-control"]


def test_client_routes_fall_back_to_the_app(built: TestClient) -> None:
    for path in ("/policies", "/policies/0190-abc", "/admin/api-keys", "/apis", "/metricsx"):
        response = built.get(path)
        assert response.status_code == 200, path
        assert "id=root" in response.text


def test_never_shadows_the_api_or_probes(built: TestClient) -> None:
    assert built.get("/api/v1/things").json() == {"items": []}
    missing = built.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert built.get("/api/v1/auth/login").status_code == 405
    assert built.get("/healthz").json() == {"status": "ok"}
    for path in ("/docs/x", "/.well-known/x", "/metrics", "/metrics/", "/openapi.json", "/api"):
        response = built.get(path)
        assert "id=root" not in response.text, path


def test_missing_assets_and_traversal_are_404(built: TestClient) -> None:
    assert built.get("/assets/index-old.js").status_code == 404
    assert built.get("/../secret.txt").status_code in (200, 404)
    assert "outside dist" not in built.get("/..%2fsecret.txt").text
    assert "outside dist" not in built.get("/assets/..%2f..%2fsecret.txt").text


def test_without_a_build_the_root_says_how_to_build(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path / "absent")) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "npm ci &amp;&amp; npm run build" in page.text
        assert client.get("/policies").status_code == 404
        assert client.get("/api/v1/things").status_code == 200
