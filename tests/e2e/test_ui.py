"""The web studio in real Chromium against a real control-plane process.

The journey of M6: sign up → author a RolePolicy and a RegoPolicy with a deliberate syntax
error, seen at its line → fix → simulate an allow and a deny → publish → see the bundle
revision → create an API key and see it exactly once. Screenshots of the main pages land in
`tests/e2e/artifacts/` (gitignored). Needs the built studio (`make test` builds it first)
and `/usr/bin/chromium` (`.ci/run` installs it); never `playwright install`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import PASSWORD, PostgresDatabases
from tests.e2e.studio_process import require_built_studio, serving
from tests.e2e.test_up import free_port
from tests.idp.dns_server import LocalDns

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"

ROLE_POLICY = """apiVersion: kaizen.studio/v1
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
    - name: agent-admin
      inherits: [agent-user]
      permissions: [{resource: "agent:*", actions: [create, update, delete, deploy]}]
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
"""

# Line 8: the comparison has no right-hand side.
BROKEN_REGO = """apiVersion: kaizen.studio/v1
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "mcp tool shell is forbidden" if input.tool.name ==
"""
FIXED_REGO = BROKEN_REGO.replace("input.tool.name ==\n", 'input.tool.name == "shell"\n')


@pytest.fixture(scope="module")
async def ui_postgres_database(postgres_databases: PostgresDatabases) -> str:
    return await postgres_databases.create("ui")


@pytest.fixture(scope="module")
def ui_dns() -> Iterator[LocalDns]:
    """The DNS server the control plane verifies organisation email domains against."""
    server = LocalDns().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, ui_dns: LocalDns
) -> Iterator[str]:
    require_built_studio()
    home = tmp_path_factory.mktemp("ui")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env.update(
        KAIZEN_HOME=str(home),
        KAIZEN_LOGIN_ATTEMPTS_PER_WINDOW="1000",
        KAIZEN_DEFAULT_PLAN="enterprise",
    )
    env["KAIZEN_DNS_NAMESERVER"] = ui_dns.nameserver
    if os.environ.get("KAIZEN_TEST_POSTGRES_URL"):
        env["KAIZEN_DATABASE_URL"] = request.getfixturevalue("ui_postgres_database")
    port = free_port()
    with serving(env, port, home / "control-plane.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_up(page: Page, url: str, organization: str) -> str:
    email = f"owner-{time.monotonic_ns()}@example.com"
    page.goto(url)
    expect(page.get_by_role("heading", name="Log in to Kaizen Studio")).to_be_visible()
    shot(page, "login")
    page.get_by_role("link", name="Create an organisation").click()
    page.get_by_role("button", name="Sign up").click()
    # The API's field errors appear next to their fields.
    expect(page.get_by_text("String should have at least 1 character").first).to_be_visible()
    page.get_by_label("Organisation name").fill(organization)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Dashboard", exact=True, level=1)).to_be_visible()
    return email


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def set_editor(page: Page, text: str) -> None:
    editor = page.get_by_role("textbox", name="Policy source (YAML)")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def test_author_simulate_and_publish_policies(control_plane: str, page: Page) -> None:
    sign_up(page, control_plane, "Acme")
    expect(page.get_by_text("No decisions in this window.")).to_be_visible()
    shot(page, "dashboard-empty")
    nav(page, "Policies")
    expect(page.get_by_text("No policies yet.")).to_be_visible()
    shot(page, "policies-empty")

    # A RolePolicy, saved as a draft; its role matrix shows inheritance.
    page.get_by_role("link", name="New policy").click()
    set_editor(page, ROLE_POLICY)
    expect(page.get_by_text("No problems found")).to_be_visible()
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", name="agent-roles")).to_be_visible()
    page.get_by_role("tab", name="Role matrix").click()
    expect(page.get_by_role("row", name=re.compile("agent-admin"))).to_contain_text(
        "inherited from agent-user"
    )
    shot(page, "policy-role-matrix")

    # A RegoPolicy with a syntax error: the problem is shown at line 8, both in the list
    # and as a diagnostic on the eighth line of the editor.
    nav(page, "Policies")
    page.get_by_role("link", name="New policy").click()
    set_editor(page, BROKEN_REGO)
    problems = page.get_by_role("list", name="Problems")
    expect(problems).to_contain_text(re.compile(r"line 8, column \d+: spec\.rego: "))
    expect(page.locator(".cm-line").nth(7).locator(".cm-lintRange-error")).to_have_count(1)
    shot(page, "policy-editor-error")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Not saved:")).to_be_visible()

    set_editor(page, FIXED_REGO)
    expect(page.get_by_text("No problems found")).to_be_visible()
    expect(page.locator(".cm-lintRange-error")).to_have_count(0)
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", name="guardrails")).to_be_visible()

    # Simulate against the drafts: RBAC allows alice; the Rego rule denies the shell tool.
    nav(page, "Simulate")
    page.get_by_role("button", name="Simulate", exact=True).click()
    expect(page.get_by_test_id("outcome")).to_have_text("allow")
    expect(page.get_by_text("rbac:agent-user:invoke:agent:*")).to_be_visible()
    shot(page, "simulate-allow")
    page.get_by_label("Channel").select_option("mcp")
    page.get_by_label("MCP tool name").fill("shell")
    page.get_by_role("button", name="Simulate", exact=True).click()
    expect(page.get_by_test_id("outcome")).to_have_text("deny")
    expect(page.get_by_text("mcp tool shell is forbidden")).to_be_visible()
    shot(page, "simulate-deny")

    # Tests run in the page; publish asks for confirmation, then names the revision.
    nav(page, "Policies")
    expect(page.get_by_role("link", name="guardrails")).to_be_visible()
    page.get_by_role("button", name="Run tests").click()
    expect(page.get_by_text(re.compile(r"All \d+ test cases? passed"))).to_be_visible()
    page.get_by_role("button", name="Publish drafts…").click()
    dialog = page.get_by_role("dialog", name="Publish the drafts?")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Message (optional)").fill("first rules")
    dialog.get_by_role("button", name="Publish").click()
    expect(page.get_by_text("Published bundle revision 1")).to_be_visible()
    shot(page, "policies-published")

    page.get_by_role("link", name="See bundle revisions").click()
    row = page.get_by_role("row", name=re.compile("first rules"))
    expect(row).to_contain_text("agent-roles v1")
    expect(row).to_contain_text("guardrails v1")
    expect(row).to_contain_text("current")
    shot(page, "bundles")


def test_admin_creates_an_api_key_shown_once(control_plane: str, page: Page) -> None:
    sign_up(page, control_plane, "Globex")
    nav(page, "API keys")
    expect(page.get_by_text("No API keys yet.")).to_be_visible()
    page.get_by_label("Name").fill("ci-bot")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-api-key")
    expect(secret).to_have_value(re.compile(r"^ks_"))
    key = secret.input_value()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    shot(page, "api-key-created")
    assert httpx.get(
        f"{control_plane}/api/v1/me", headers={"Authorization": f"Bearer {key}"}
    ).is_success

    page.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_role("cell", name="ci-bot")).to_be_visible()
    assert key not in page.content()
    page.reload()
    expect(page.get_by_role("cell", name="ci-bot")).to_be_visible()
    assert key not in page.content(), "the key is shown once, never again"

    # Revoking goes through the admin table's confirmation: cancel keeps the key working,
    # confirming revokes it at once.
    row = page.get_by_role("row").filter(has_text="ci-bot")
    row.get_by_role("button", name="Revoke…").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert httpx.get(
        f"{control_plane}/api/v1/me", headers={"Authorization": f"Bearer {key}"}
    ).is_success
    row.get_by_role("button", name="Revoke…").click()
    expect(page.get_by_role("dialog")).to_contain_text("Revoke ci-bot?")
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Revoke…")).to_have_count(0)
    assert (
        httpx.get(
            f"{control_plane}/api/v1/me", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 401
    )

    # The admin action is in the audit trail, whose chain verifies.
    nav(page, "Audit events")
    expect(page.get_by_text(re.compile(r"Intact: \d+ events"))).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile("api_key")).first).to_be_visible()
    shot(page, "audit")

    # Tablet width: the navigation folds into a menu that still reaches every page.
    page.set_viewport_size({"width": 820, "height": 1180})
    page.get_by_role("button", name="Menu").click()
    nav(page, "Members")
    expect(page.get_by_role("heading", name="Members and roles")).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile("owner-.*@example.com"))).to_be_visible()
    shot(page, "members-tablet")


def _decision(decision_id: str, principal: str, outcome: str, reason: str) -> dict[str, object]:
    return {
        "decision_id": decision_id,
        "time": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "duration_us": 180,
        "instance": "sidecar-1",
        "input": {
            "principal": {"id": principal, "type": "user"},
            "action": "invoke",
            "resource": {"type": "agent", "id": "agent:support-bot", "workspace": "prod"},
            "channel": "mcp",
            "tool": {"name": "shell", "arguments": {}},
        },
        "result": {"outcome": outcome, "reasons": [reason], "bundle_revision": 1, "key_id": "k1"},
    }


def test_gateway_fleet_and_decision_explorer(control_plane: str, page: Page) -> None:
    email = sign_up(page, control_plane, "Initech")

    # Register a gateway in the fleet page: its credential is shown once.
    nav(page, "Gateways")
    expect(page.get_by_text("No gateways yet.")).to_be_visible()
    page.get_by_role("button", name="Register gateway").click()
    expect(page.get_by_text("String should have at least 1 character").first).to_be_visible()
    page.get_by_label("Gateway name").fill("edge-prod")
    page.get_by_label("Environment", exact=True).select_option("prod")
    page.get_by_label("Gateway URL").fill("https://edge.example.com")
    page.get_by_role("button", name="Register gateway").click()
    credential_box = page.get_by_test_id("gateway-credential")
    expect(credential_box).to_have_value(re.compile(r"^kgw_"))
    credential = credential_box.input_value()
    page.get_by_role("button", name="I have stored it").click()
    card = page.get_by_role("article", name=re.compile("edge-prod"))
    expect(card).to_contain_text("prod")
    expect(card.get_by_test_id("gateway-health")).to_have_text("no sidecar has reported")
    assert credential not in page.content()

    # Its sidecar reports in and ships two decisions.
    bearer = {"Authorization": f"Bearer {credential}"}
    status = httpx.post(
        f"{control_plane}/api/v1/gateways/self/status",
        headers=bearer,
        json={
            "instance": "sidecar-1",
            "bundle_revision": None,
            "decisions": {"allow": 1, "deny": 1},
        },
    )
    assert status.status_code == 204, status.text
    ingest = httpx.post(
        f"{control_plane}/api/v1/decisions/ingest",
        headers=bearer,
        json={
            "decisions": [
                _decision("d-allow-1", "user:alice@example.com", "allow", "rbac:agent-user"),
                _decision(
                    "d-deny-1", "user:mallory@example.com", "deny", "mcp tool shell is forbidden"
                ),
            ]
        },
    )
    assert ingest.json() == {"accepted": 2, "duplicates": 0}, ingest.text

    card.get_by_role("button", name="Refresh status").click()
    expect(card.get_by_test_id("gateway-health")).to_have_text("healthy")
    expect(card.get_by_role("row", name=re.compile("sidecar-1"))).to_contain_text("in sync")
    # Copyable snippets for calling an agent on each channel.
    card.get_by_text("Call an agent through this gateway").click()
    expect(card.get_by_test_id("snippet-api")).to_contain_text(
        "https://edge.example.com/v1/agents/support-bot/invoke"
    )
    card.get_by_role("tab", name="MCP client").click()
    expect(card.get_by_test_id("snippet-mcp")).to_contain_text("https://edge.example.com/mcp")
    shot(page, "gateways")

    # The explorer lists both, filters to the deny, and shows its input and output.
    nav(page, "Decisions")
    expect(page.get_by_role("cell", name="user:alice@example.com")).to_be_visible()
    expect(page.get_by_role("cell", name="user:mallory@example.com")).to_be_visible()
    page.get_by_label("Outcome").select_option("deny")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_role("cell", name="user:mallory@example.com")).to_be_visible()
    expect(page.get_by_role("cell", name="user:alice@example.com")).to_have_count(0)
    assert "outcome=deny" in page.url
    page.get_by_role("button", name="Details of decision d-deny-1").click()
    drawer = page.get_by_role("dialog", name="Decision")
    expect(drawer).to_contain_text("mcp tool shell is forbidden")
    expect(drawer).to_contain_text("bundle revision 1")
    expect(drawer).to_contain_text("edge-prod")
    expect(drawer.get_by_label("Decision input")).to_contain_text('"name": "shell"')
    shot(page, "decision-detail")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()

    # A deep link opens the same filters and decision after a reload.
    page.reload()
    expect(page.get_by_label("Outcome")).to_have_value("deny")
    page.get_by_role("button", name=re.compile("Clear")).click()
    expect(page.get_by_role("cell", name="user:alice@example.com")).to_be_visible()
    page.get_by_label("From").fill("2026-11-27T00:00")
    page.get_by_label("Until").fill("2026-11-26T00:00")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("must be after “From”")).to_be_visible()

    # The dashboard counts them and names who was denied.
    nav(page, "Dashboard")
    expect(page.get_by_test_id("total-allow")).to_have_text("1")
    expect(page.get_by_test_id("total-deny")).to_have_text("1")
    expect(page.get_by_test_id("top-principal")).to_contain_text("user:mallory@example.com")
    expect(page.get_by_test_id("top-resource")).to_contain_text("agent:support-bot")
    expect(page.get_by_role("region", name="Gateway health")).to_contain_text("healthy")
    shot(page, "dashboard")

    # A held call becomes an approval request; the owner approves it with a comment. Only a
    # held decision naming a revision the organisation published opens one: publish one.
    login = httpx.post(
        f"{control_plane}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
    roles_only = "kind: RolePolicy\nmetadata: {name: extra}\nspec:\n  roles: [{name: reader}]\n"
    drafted = httpx.post(
        f"{control_plane}/api/v1/policies", headers=owner, json={"source": roles_only}
    )
    assert drafted.status_code == 201, drafted.text
    published = httpx.post(f"{control_plane}/api/v1/policies/publish", headers=owner, json={})
    assert published.status_code == 201, published.text
    held = _decision(
        "d-held-1", "user:bob@example.com", "require_approval", "deploys need approval"
    )
    held["input"]["action"] = "deploy"  # type: ignore[index]
    held["result"]["bundle_revision"] = published.json()["revision"]  # type: ignore[index]
    ingest = httpx.post(
        f"{control_plane}/api/v1/decisions/ingest", headers=bearer, json={"decisions": [held]}
    )
    assert ingest.json()["accepted"] == 1, ingest.text
    nav(page, "Approvals")
    row = page.get_by_role("row", name=re.compile("user:bob@example.com"))
    expect(row).to_contain_text("deploys need approval")
    shot(page, "approvals-pending")
    row.get_by_role("button", name=re.compile("^Approve deploy")).click()
    dialog = page.get_by_role("dialog", name=re.compile("Approve deploy"))
    dialog.get_by_label("Comment (optional)").fill("change ticket 42")
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_text("Approved: deploy on agent:support-bot")).to_be_visible()
    expect(page.get_by_text("Nothing waits for approval.")).to_be_visible()
    page.get_by_role("tab", name="Approved").click()
    expect(page.get_by_role("row", name=re.compile("user:bob@example.com"))).to_contain_text(
        "change ticket 42"
    )


def test_design_an_agent_and_a_pipeline_on_its_canvas(control_plane: str, page: Page) -> None:
    sign_up(page, control_plane, "Hooli")
    nav(page, "Agents")
    expect(page.get_by_text("No agents yet.")).to_be_visible()
    page.get_by_role("button", name="New agent").click()
    page.get_by_label("Agent name").fill("researcher")
    page.get_by_label("System prompt").fill("You research.")
    # The YAML view shows what the form wrote.
    page.get_by_role("tab", name="YAML").click()
    source = page.get_by_role("textbox", name="Agent source (YAML)")
    expect(source).to_contain_text("name: researcher")
    page.get_by_role("tab", name="Form").click()
    page.get_by_role("button", name="Save agent").click()
    # Wait on the durable result: the list, reloaded from the server, has the saved version
    # and the page now shows it. Its confirmation must survive that switch (it once vanished
    # with the "new agent" editor, so a busy machine could miss it).
    expect(page.get_by_role("button", name=re.compile("^researcher v1"))).to_be_visible()
    expect(page.get_by_role("heading", name="researcher v1")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Saved researcher v1")).to_be_visible()
    expect(page).to_have_url(re.compile(r"[?&]id=[^&]+$"))
    shot(page, "agent-designer")

    nav(page, "Pipelines")
    page.get_by_role("button", name="New pipeline").click()
    page.get_by_label("Pipeline name").fill("triage")
    page.get_by_label("Agents, in order").fill("researcher, nobody")
    canvas = page.get_by_test_id("pipeline-canvas")
    expect(canvas).to_contain_text("researcher")
    expect(canvas).to_contain_text("nobody")
    page.get_by_role("button", name="Save pipeline").click()
    # The server's problem is shown next to the field it names.
    expect(page.get_by_role("list", name="Problems")).to_contain_text("spec.agents")
    agents_field = page.locator(".field", has=page.get_by_label("Agents, in order"))
    expect(agents_field.locator(".field-error")).to_contain_text("nobody")

    page.get_by_label("Pattern").select_option("supervisor_worker")
    page.get_by_label("Supervisor").fill("researcher")
    page.get_by_label("Workers").fill("researcher")
    expect(canvas).to_contain_text("supervisor")
    page.get_by_role("button", name="Save pipeline").click()
    expect(page.get_by_role("button", name=re.compile("^triage v1"))).to_be_visible()
    expect(page.get_by_role("heading", name="triage v1")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Saved triage v1")).to_be_visible()
    expect(page.get_by_role("list", name="Problems")).to_have_count(0)
    expect(canvas).to_contain_text("supervisor")
    shot(page, "pipeline-canvas")


# -- identity and admin (M6 item 7, M7 item 7) ----------------------------------------------


def log_out(page: Page) -> None:
    page.get_by_role("banner").get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Kaizen Studio")).to_be_visible()


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def next_code(secret: str) -> str:
    """A code the server has not accepted yet: codes are single-use per 30-second step and
    the next step is within the accepted drift."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def wrong_code(secret: str) -> str:
    valid = {pyotp.TOTP(secret).at(time.time() + drift) for drift in (-30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in valid)


def enrol_totp(page: Page) -> str:
    """Scan-free enrolment: the setup key, a computed code, the recovery codes once."""
    secret_field = page.get_by_test_id("totp-secret")
    expect(secret_field).to_have_value(re.compile(r"^[A-Z2-7]{16,}$"))
    expect(page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    secret = secret_field.input_value()
    page.get_by_label("Code from the app").fill(wrong_code(secret))
    page.get_by_role("button", name="Verify and turn on").click()
    expect(page.locator(".field-error")).to_be_visible()  # a wrong code is refused at the field
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Verify and turn on").click()
    codes = page.get_by_role("list", name="Recovery codes").get_by_role("listitem")
    expect(codes).to_have_count(10)
    expect(page.get_by_role("button", name="Download codes")).to_be_visible()
    return secret


def test_mfa_enrolment_login_with_a_code_and_required_for_a_role(
    control_plane: str, page: Page
) -> None:
    email = sign_up(page, control_plane, "Umbrella")
    page.get_by_role("link", name=re.compile(re.escape(email))).click()
    expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    page.get_by_role("button", name="Set up an authenticator app").click()
    secret = enrol_totp(page)
    shot(page, "mfa-recovery-codes")
    recovery = page.get_by_role("list", name="Recovery codes").get_by_role("listitem").first
    recovery_code = recovery.inner_text().strip()
    page.get_by_role("button", name="I have saved these codes").click()
    expect(page.get_by_text("Two-factor authentication is on.")).to_be_visible()
    expect(page.get_by_text("10 recovery codes left")).to_be_visible()
    assert recovery_code not in page.content(), "recovery codes are shown once"

    # Log out; the password alone is no longer enough: the page asks for a code.
    log_out(page)
    log_in(page, email)
    expect(page.get_by_label("Authentication code")).to_be_visible()
    page.get_by_label("Authentication code").fill(wrong_code(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_label("Authentication code").fill(next_code(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Dashboard", exact=True, level=1)).to_be_visible()

    # The owner adds an admin and requires MFA for admins.
    nav(page, "Members")
    admin = f"admin-{time.monotonic_ns()}@example.com"
    page.get_by_label("Email").fill(admin)
    page.get_by_label("Initial password").fill(PASSWORD)
    page.get_by_label("Role").select_option("admin")
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("cell", name=admin, exact=True)).to_be_visible()
    nav(page, "Sign-in and SSO")
    page.get_by_label("admin", exact=True).check()
    page.get_by_role("button", name="Save MFA rule…").click()
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(page.get_by_text("MFA rule saved.")).to_be_visible()
    shot(page, "sso-and-mfa-settings")

    # The admin's first login walks them through enrolment, then lets them in.
    log_out(page)
    log_in(page, admin)
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    enrol_totp(page)
    page.get_by_role("button", name="I have saved these codes").click()
    expect(page.get_by_role("heading", name="Dashboard", exact=True, level=1)).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text(admin)


def test_revoke_another_session(control_plane: str, page: Page) -> None:
    email = sign_up(page, control_plane, "Hooli")
    other = httpx.post(
        f"{control_plane}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    ).json()
    page.get_by_role("link", name=re.compile(re.escape(email))).click()
    rows = page.get_by_test_id("session-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("this session")
    shot(page, "sessions")
    page.get_by_role("button", name=re.compile("^Revoke session of a Python client")).click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("Ended the session of a Python client.")).to_be_visible()
    expect(rows).to_have_count(1)
    # The revoked session's tokens stop working; this one keeps going.
    refreshed = httpx.post(
        f"{control_plane}/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert (
        httpx.get(
            f"{control_plane}/api/v1/me",
            headers={"Authorization": f"Bearer {other['access_token']}"},
        ).status_code
        == 401
    )
    page.reload()
    expect(page.get_by_test_id("session-row")).to_have_count(1)


def test_webhook_secret_once_provider_key_write_only_and_sso_routing(
    control_plane: str, page: Page, browser: Browser, ui_dns: LocalDns
) -> None:
    sign_up(page, control_plane, "Vandelay")

    # A webhook: its signing secret is shown once.
    nav(page, "Webhooks")
    expect(page.get_by_text("No webhooks yet.")).to_be_visible()
    page.get_by_label("URL").fill("not a url")
    page.get_by_role("button", name="Add webhook").click()
    url_field = page.locator(".field", has=page.get_by_label("URL"))
    expect(url_field.locator(".field-error")).to_be_visible()
    page.get_by_label("URL").fill("https://hooks.example.com/kaizen")
    page.get_by_label(re.compile("^budget.hard_limit")).check()
    page.get_by_role("button", name="Add webhook").click()
    secret_field = page.get_by_test_id("webhook-secret")
    expect(secret_field).to_have_value(re.compile(r"\S{16,}"))
    secret = secret_field.input_value()
    shot(page, "webhook-created")
    page.get_by_role("button", name="I have stored it").click()
    expect(
        page.get_by_role("cell", name="https://hooks.example.com/kaizen", exact=True)
    ).to_be_visible()
    assert secret not in page.content()
    page.get_by_role("button", name="Deliveries").click()
    expect(page.get_by_text("No deliveries yet.")).to_be_visible()
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    page.reload()
    expect(
        page.get_by_role("cell", name="https://hooks.example.com/kaizen", exact=True)
    ).to_be_visible()
    assert secret not in page.content(), "the signing secret is shown once, never again"

    # A provider key: stored, listed by name, never shown.
    nav(page, "Provider keys")
    # The webhook's signing secret is in the store too, by name only.
    expect(page.get_by_role("cell", name=re.compile(r"^webhooks\S+secret$"))).to_be_visible()
    provider_key = f"sk-test-{time.monotonic_ns()}"
    page.get_by_label("Provider").fill("openai")
    page.get_by_label("API key").fill(provider_key)
    page.get_by_role("button", name="Store key").click()
    expect(page.get_by_text("Key for openai stored.")).to_be_visible()
    expect(page.get_by_role("cell", name="providers/openai/api_key")).to_be_visible()
    expect(page.get_by_label("API key")).to_have_value("")
    assert provider_key not in page.content()
    page.reload()
    expect(page.get_by_role("cell", name="providers/openai/api_key")).to_be_visible()
    assert provider_key not in page.content(), "a provider key is never shown again"
    shot(page, "provider-keys")

    # An OIDC provider with a group mapping; its email domain routes the login page to it.
    # A provider routes only domains its organisation proved by DNS: claim, publish, verify.
    domain = f"vandelay-{time.monotonic_ns()}.example.com"
    nav(page, "Sign-in and SSO")
    expect(page.get_by_text("No email domains yet.")).to_be_visible()
    page.get_by_label("Domain", exact=True).fill(domain)
    page.get_by_role("button", name="Claim domain").click()
    row = page.get_by_role("row").filter(has_text=domain)
    expect(row).to_contain_text("unverified")
    txt = row.locator("code").inner_text()
    assert txt.startswith("kaizen-studio-verification=")
    row.get_by_role("button", name=f"Verify {domain}").click()
    expect(page.get_by_role("alert")).to_contain_text("no TXT record")
    ui_dns.set_txt(domain, txt)
    row.get_by_role("button", name=f"Verify {domain}").click()
    expect(row.get_by_role("button", name=f"Verify {domain}")).to_have_count(0)
    expect(row).not_to_contain_text("unverified")
    shot(page, "sso-domain-verified")
    expect(page.get_by_text("No identity providers yet.")).to_be_visible()
    page.get_by_role("button", name="Add identity provider").click()
    page.get_by_label("Name", exact=True).fill("vandelay-okta")
    page.get_by_label("Preset").select_option("okta")
    page.get_by_label("Email domains").fill(domain)
    page.get_by_label("Issuer").fill("https://vandelay.okta.example.com")
    page.get_by_label("Client ID").fill("kaizen-studio")
    page.get_by_label("Client secret").fill("client-secret-value")
    page.get_by_role("button", name="Add a group").click()
    page.get_by_label("Group 1", exact=True).fill("security")
    page.get_by_label("Role for group 1").select_option("security_admin")
    page.get_by_label("Teams for group 1").fill("secops")
    page.get_by_role("button", name="Add provider").click()
    card = page.get_by_role("article").filter(has_text="vandelay-okta")
    expect(card).to_contain_text("secret stored")
    expect(card).to_contain_text("1 mapped")
    expect(card).to_contain_text("/callback")
    assert "client-secret-value" not in page.content()
    shot(page, "sso-provider")

    login_page = browser.new_context().new_page()
    # Where an IdP login lands: a spent or forged code is refused with the API's message.
    login_page.goto(f"{control_plane}/#/sso?code=forged-code-0123456789")
    expect(login_page.get_by_role("heading", name="Single sign-on")).to_be_visible()
    expect(login_page.get_by_role("alert")).to_be_visible()
    login_page.get_by_role("link", name="Back to log in").click()
    login_page.get_by_label("Email").fill(f"kramer@{domain}")
    continue_link = login_page.get_by_role("link", name="Continue with vandelay-okta")
    expect(continue_link).to_be_visible()
    assert "/api/v1/auth/oidc/" in (continue_link.get_attribute("href") or "")
    login_page.context.close()

    # Removing the domain asks first; once removed, its addresses no longer route to SSO.
    row.get_by_role("button", name=f"Remove {domain}").click()
    expect(page.get_by_role("dialog")).to_contain_text("stops routing")
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    expect(page.get_by_text("No email domains yet.")).to_be_visible()
    login_page = browser.new_context().new_page()
    login_page.goto(f"{control_plane}/")
    with login_page.expect_response(lambda r: "/auth/sso/discover" in r.url) as discovery:
        login_page.get_by_label("Email").fill(f"kramer@{domain}")
    assert discovery.value.status == 404, "a removed domain routes to no provider"
    expect(login_page.get_by_role("link", name="Continue with vandelay-okta")).to_have_count(0)
    login_page.context.close()


def test_impact_replay_and_the_publish_gate(control_plane: str, page: Page) -> None:
    email = sign_up(page, control_plane, "Soylent")
    token = httpx.post(
        f"{control_plane}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    ).json()["access_token"]
    owner = {"Authorization": f"Bearer {token}"}
    gateway = httpx.post(
        f"{control_plane}/api/v1/gateways",
        headers=owner,
        json={"name": "edge", "environment": "prod", "url": "https://edge.example.com"},
    )
    assert gateway.status_code == 201, gateway.text
    bearer = {"Authorization": f"Bearer {gateway.json()['credential']}"}
    ingest = httpx.post(
        f"{control_plane}/api/v1/decisions/ingest",
        headers=bearer,
        json={
            "decisions": [
                _decision("r-allow-1", "user:alice@example.com", "allow", "rbac:agent-user"),
                _decision("r-deny-1", "user:mallory@example.com", "deny", "rbac: no role"),
            ]
        },
    )
    assert ingest.json() == {"accepted": 2, "duplicates": 0}, ingest.text
    drafts = httpx.post(
        f"{control_plane}/api/v1/policies",
        headers=owner,
        json={"source": ROLE_POLICY + "---\n" + FIXED_REGO},
    )
    assert drafts.status_code == 201, drafts.text

    nav(page, "Policies")
    gate = page.get_by_label(re.compile("^Publish only after a replay"))
    gate.click()  # saved at once; checked once the server has it
    expect(gate).to_be_checked()
    page.get_by_role("button", name="Publish drafts…").click()
    page.get_by_role("dialog").get_by_role("button", name="Publish").click()
    expect(page.get_by_role("alert")).to_contain_text("publishing requires a completed replay")

    # Replay the drafts over the last week: alice's allowed shell call would now be denied.
    page.get_by_role("button", name="Replay decisions").click()
    expect(page.get_by_text("1 outcome would change, 1 of them risky.")).to_be_visible()
    transition = page.get_by_test_id("replay-transition")
    expect(transition).to_have_count(1)
    expect(transition).to_contain_text("allow → deny: 1 decision")
    expect(transition).to_contain_text("user:alice@example.com invoke agent:support-bot")
    expect(transition).to_contain_text("mcp tool shell is forbidden")
    expect(transition).to_contain_text("guardrails")
    shot(page, "impact-replay")

    # The gate still refuses until the publisher accepts the replay's risky change.
    page.get_by_role("button", name="Publish drafts…").click()
    page.get_by_label(re.compile("^Accept the 1 risky change")).check()
    page.get_by_role("dialog").get_by_role("button", name="Publish").click()
    expect(page.get_by_text(re.compile(r"Published bundle revision \d+"))).to_be_visible()


# -- usage and budgets (M6 item 7) -------------------------------------------------------------


def _budget(
    name: str,
    metric: str,
    window: str,
    used: float,
    limit: float,
    soft_limit: float | None = None,
) -> dict[str, object]:
    return {
        "name": name,
        "scope": "team:research",
        "metric": metric,
        "period": window.split(":")[0],
        "window": window,
        "used": used,
        "limit": limit,
        "soft_limit": soft_limit,
    }


def test_usage_page_and_budget_consumption_on_the_dashboard(control_plane: str, page: Page) -> None:
    email = sign_up(page, control_plane, "Cyberdyne")
    expect(page.get_by_role("region", name="Budget consumption")).to_contain_text(
        "No budget usage reported yet."
    )
    nav(page, "Usage and budgets")
    empty = page.get_by_text("No budget usage has been reported yet.")
    expect(empty).to_be_visible()
    expect(page.get_by_role("link", name="Policies page")).to_be_visible()

    token = httpx.post(
        f"{control_plane}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    ).json()["access_token"]
    gateway = httpx.post(
        f"{control_plane}/api/v1/gateways",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "edge", "environment": "prod", "url": "https://edge.example.com"},
    )
    assert gateway.status_code == 201, gateway.text
    bearer = {"Authorization": f"Bearer {gateway.json()['credential']}"}
    now = datetime.now(UTC)
    month, last_month = f"month:{now:%Y-%m}", f"month:{now - timedelta(days=31):%Y-%m}"
    day = f"day:{now:%Y-%m-%d}"

    def report(budgets: list[dict[str, object]]) -> None:
        status = httpx.post(
            f"{control_plane}/api/v1/gateways/self/status",
            headers=bearer,
            json={"instance": "sidecar-1", "budgets": budgets},
        )
        assert status.status_code == 204, status.text

    # Last month's window, then the current ones, as the sidecar reports them.
    report([_budget("spend", "cost_usd", last_month, 480, 500, 400)])
    report(
        [
            _budget("spend", "cost_usd", month, 450, 500, 400),
            _budget("ci-runs", "executions", day, 1000, 1000),
            _budget("research-tokens", "tokens", day, 12_000, 100_000, 80_000),
        ]
    )

    page.get_by_role("button", name="Refresh").click()
    spend = page.get_by_role("article", name="spend")
    expect(spend).to_contain_text("$450.00 of $500.00 (90%)")
    expect(spend.get_by_test_id("usage-state")).to_have_text("over the soft limit")
    expect(spend).to_contain_text("soft limit $400.00")
    expect(spend).to_contain_text(f"Current window: {month.replace(':', ' ')}")
    expect(spend).to_contain_text(re.compile(r"reported \d+ s ago"))
    meter = spend.get_by_role("meter")
    expect(meter).to_have_attribute("aria-valuetext", re.compile("over the soft limit"))
    ci_runs = page.get_by_role("article", name="ci-runs")
    expect(ci_runs).to_contain_text("1,000 executions of 1,000 executions (100%)")
    expect(ci_runs.get_by_test_id("usage-state")).to_have_text("at or over the limit")
    tokens = page.get_by_role("article", name="research-tokens")
    expect(tokens.get_by_test_id("usage-state")).to_have_text("within budget")
    expect(tokens).to_contain_text("12,000 tokens of 100,000 tokens (12%)")
    # Most consumed first.
    expect(page.get_by_role("article")).to_have_count(3)
    expect(page.get_by_role("article").first).to_have_accessible_name("ci-runs")

    # The history of a budget: last month's window, kept after the period rolled over.
    spend.get_by_text("Earlier windows (1)").click()
    history = spend.get_by_role("row", name=re.compile(re.escape(last_month.replace(":", " "))))
    expect(history).to_contain_text("$480.00")
    expect(history).to_contain_text("over the soft limit")
    shot(page, "usage")

    # The filter keeps only one budget, in the URL.
    page.get_by_label("Budget", exact=True).select_option("spend")
    expect(page.get_by_role("article")).to_have_count(1)
    expect(page.get_by_role("article", name="spend")).to_be_visible()
    assert "budget=spend" in page.url
    page.reload()
    expect(page.get_by_label("Budget", exact=True)).to_have_value("spend")
    expect(page.get_by_role("article")).to_have_count(1)

    # Tablet width: the bars fit and the page still reads.
    page.set_viewport_size({"width": 820, "height": 1180})
    expect(page.get_by_role("article", name="spend").get_by_role("meter")).to_be_visible()
    page.set_viewport_size({"width": 1366, "height": 900})

    # The dashboard's card: the current windows, most consumed first, linking to the page.
    nav(page, "Dashboard")
    card = page.get_by_role("region", name="Budget consumption")
    items = card.get_by_test_id("budget-consumption").get_by_role("listitem")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("ci-runs")
    expect(items.first.get_by_test_id("usage-state")).to_have_text("at or over the limit")
    expect(card).to_contain_text("$450.00 of $500.00")
    shot(page, "dashboard-budgets")
    card.get_by_role("link", name="See usage of every budget").click()
    expect(page.get_by_role("heading", name="Usage and budgets", level=1)).to_be_visible()


def test_connectors_page_creates_tests_and_deletes_a_connector(
    control_plane: str, page: Page
) -> None:
    sign_up(page, control_plane, "Initech")
    nav(page, "Connectors")
    expect(page.get_by_text("No connectors yet.")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("warehouse")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Database").fill("shop")
    page.get_by_label("Username").fill("reader")
    page.get_by_label("Password").fill("s3cret-ui-password")
    page.get_by_role("button", name="Create connector").click()
    # The outbound guard refuses loopback here (no KAIZEN_OUTBOUND_ALLOW_CIDRS), at the field.
    expect(
        page.get_by_text(
            "refused to contact 127.0.0.1: 127.0.0.1 is a loopback address", exact=True
        )
    ).to_be_visible()
    page.get_by_label("Host").fill("db.invalid")  # accepted: it is judged when it resolves
    page.get_by_role("button", name="Create connector").click()
    row = page.get_by_role("row").filter(has_text="warehouse")
    expect(row).to_contain_text("db.invalid:5432/shop")
    expect(row).to_contain_text("read-only")
    expect(row).to_contain_text("stored")
    assert "s3cret-ui-password" not in page.content(), "the password is write-only"

    row.get_by_role("button", name="Test warehouse").click()
    expect(page.get_by_test_id("connector-test")).to_contain_text("Nothing answered")
    shot(page, "connectors")
    row.get_by_role("button", name="Decisions on warehouse").click()
    expect(page.get_by_role("dialog")).to_contain_text("No calls through warehouse yet.")
    page.get_by_role("dialog").get_by_role("button", name="Close").click()

    row.get_by_role("button", name="Delete warehouse").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_text("No connectors yet.")).to_be_visible()


def test_connectors_page_creates_an_s3_connector_with_its_own_fields(
    control_plane: str, page: Page
) -> None:
    sign_up(page, control_plane, "Initrode")
    nav(page, "Connectors")
    page.get_by_label("Name", exact=True).fill("files")
    page.get_by_label("Type").select_option("s3")
    expect(page.get_by_label("Host")).to_have_count(0)  # a database's fields are gone
    page.get_by_label("Access key ID").fill("AKIAUIEXAMPLE")
    page.get_by_label("Secret access key").fill("s3cret-ui-access-key")
    page.get_by_label("Endpoint URL").fill("http://127.0.0.1:9000")
    page.get_by_label("Buckets").fill("docs, inbox")
    page.get_by_role("button", name="Create connector").click()
    # The outbound guard judges the endpoint as it does a database host, at the field.
    expect(
        page.get_by_text(
            "refused to contact 127.0.0.1: 127.0.0.1 is a loopback address", exact=True
        )
    ).to_be_visible()
    page.get_by_label("Endpoint URL").fill("http://s3.invalid:9000")
    page.get_by_role("button", name="Create connector").click()
    row = page.get_by_role("row").filter(has_text="files")
    expect(row).to_contain_text("http://s3.invalid:9000 [docs, inbox]")
    expect(row).to_contain_text("S3")
    expect(row).to_contain_text("stored")
    assert "s3cret-ui-access-key" not in page.content(), "the secret key is write-only"
    row.get_by_role("button", name="Test files").click()
    expect(page.get_by_test_id("connector-test")).to_contain_text(
        "Nothing answered at that endpoint"
    )
    shot(page, "connectors-s3")
