"""The OAuth consent step in real Chromium: an MCP client's authorization request sends the
browser to the studio; the person signs in there (the request survives the sign-in), sees
the client, its gateway and the scopes in words, approves, and the browser lands on the
client's loopback redirect with a code that the client exchanges for an audience-bound token.

Needs the built studio (`make test` builds it) and `/usr/bin/chromium`.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL
from tests.e2e import sidecar_procs as procs
from tests.integration.oauth_support import REDIRECT, query, s256

DIST = procs.ROOT / "control_plane" / "ui" / "dist"
CHROMIUM = "/usr/bin/chromium"
RESOURCE = "http://gw-a.test:10000/mcp"


@pytest.fixture
def studio(database: str, tmp_path: Path) -> Iterator[str]:
    if not (DIST / "index.html").is_file():
        pytest.fail("the web studio is not built: cd control_plane/ui && npm ci && npm run build")
    cp = procs.ControlPlane.configured(
        tmp_path / "cp",
        database_url=database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    cp.env["KAIZEN_CONTROL_PLANE_URL"] = cp.url  # the issuer and the consent page live here
    cp.start()
    try:
        yield cp.url
    finally:
        cp.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context()
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
        assert not errors, f"uncaught errors in the page: {errors}"


def test_a_person_approves_an_mcp_client_in_the_studio(
    studio: str, page: Page, request: pytest.FixtureRequest
) -> None:
    http = httpx.Client(base_url=studio, timeout=30)
    request.addfinalizer(http.close)
    email = f"owner-{secrets.token_hex(3)}@example.com"
    owner = http.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "organization": "C"}
    ).json()
    admin = {"Authorization": f"Bearer {owner['access_token']}"}
    settings = http.put(
        "/api/v1/oauth/settings",
        json={"dynamic_registration": True, "metadata_documents": False},
        headers=admin,
    )
    issuer = settings.json()["issuer"]
    gateway = {"name": "edge-a", "environment": "prod", "url": RESOURCE.removesuffix("/mcp")}
    assert http.post("/api/v1/gateways", json=gateway, headers=admin).status_code == 201
    registered = http.post(
        f"{issuer}/register", json={"client_name": "Chromium IDE", "redirect_uris": [REDIRECT]}
    )
    client_id = registered.json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    started = http.get(
        f"{issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "state": "st-1",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "resource": RESOURCE,
            "scope": "mcp:connect agents:invoke",
        },
    )
    assert started.status_code == 302, started.text
    consent_url = started.headers["location"]

    # The client's loopback listener: the browser's last stop.
    landed: list[str] = []

    def callback(route: Route) -> None:
        landed.append(route.request.url)
        route.fulfill(status=200, body="You can close this window.")

    page.route(f"{REDIRECT}**", callback)
    page.goto(consent_url)
    expect(page.get_by_role("heading", name="Log in to Kaizen Studio")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Authorize Chromium IDE?")).to_be_visible()
    expect(page.get_by_text("edge-a")).to_be_visible()
    expect(page.get_by_text(RESOURCE)).to_be_visible()
    expect(page.get_by_text("Call agents as you")).to_be_visible()
    expect(page.get_by_text("See the tools")).to_have_count(0)  # mcp:list was not asked for
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{REDIRECT}**")
    (url,) = landed
    answer = query(url)
    assert answer["state"] == "st-1"
    assert answer["iss"] == issuer
    token = http.post(
        f"{issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == RESOURCE
    assert claims["scope"] == "mcp:connect agents:invoke"

    # The person sees the client under MCP clients and revokes it there.
    page.goto(f"{studio}/mcp-clients")
    row = page.get_by_role("row").filter(has_text="Chromium IDE").first
    expect(row).to_be_visible()
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("You have not authorized any MCP client.")).to_be_visible()
    assert http.get("/api/v1/oauth/grants", headers=admin).json() == []
