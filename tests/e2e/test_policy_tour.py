"""Milestone M2's "done when", for real: against a running control plane process, author a
RolePolicy, a RegoPolicy with a require_approval rule and a BudgetPolicy; simulate allow,
deny and require_approval; publish; download the bundle and verify it with
`kaizen-studio bundle verify`; tamper with one byte and see verification fail."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_up import PASSWORD, _kaizen_studio, running_up  # noqa: F401  (fixture)
from tests.integration.test_policies_api import POLICIES, TESTS


def _simulate(http: httpx.Client, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    decision_input: dict[str, Any] = {
        "principal": {"id": "user:alice@example.com", "type": "user"},
        "action": "invoke",
        "resource": {"type": "agent", "id": "agent:support-bot", "workspace": "dev"},
        "channel": "api",
        **overrides,
    }
    response = http.post(
        "/api/v1/policies/simulate", json={"input": decision_input}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _verify(bundle: Path, url: str, scope: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _kaizen_studio(),
            "bundle",
            "verify",
            str(bundle),
            "--jwks",
            f"{url}/api/v1/bundles/{scope}/jwks.json",
            "--scope",
            scope,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_author_simulate_publish_and_verify_the_bundle(
    running_up: tuple[str, subprocess.Popen[str], str],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, _process, _gateway = running_up
    with httpx.Client(base_url=url, timeout=30) as http:
        signup = http.post(
            "/api/v1/auth/signup",
            json={"email": "sec@example.com", "password": PASSWORD, "organization": "Acme"},
        )
        headers = {"Authorization": f"Bearer {signup.json()['access_token']}"}
        scope = signup.json()["organization_id"]

        authored = http.post(
            "/api/v1/policies", json={"source": POLICIES + "---\n" + TESTS}, headers=headers
        )
        assert authored.status_code == 201, authored.text

        assert _simulate(http, headers)["outcome"] == "allow"
        deny = _simulate(http, headers, tool={"name": "shell", "arguments": {}}, channel="mcp")
        assert (deny["outcome"], deny["reasons"]) == ("deny", ["mcp tool shell is forbidden"])
        held = _simulate(
            http,
            headers,
            action="deploy",
            resource={"type": "agent", "id": "agent:support-bot", "workspace": "prod"},
        )
        assert held["outcome"] == "require_approval"
        assert held["reasons"] == ["deploys to prod need approval"]

        published = http.post("/api/v1/policies/publish", json={}, headers=headers)
        assert published.status_code == 201, published.text
        bundle = http.get(f"/api/v1/bundles/{scope}/bundle.tar.gz", headers=headers)
        assert bundle.status_code == 200

        path = tmp_path / "bundle.tar.gz"
        path.write_bytes(bundle.content)
        good = _verify(path, url, scope)
        assert good.returncode == 0, good.stderr
        assert "revision 1" in good.stdout

        tampered = bytearray(bundle.content)
        tampered[len(tampered) // 2] ^= 0x01
        path.write_bytes(bytes(tampered))
        bad = _verify(path, url, scope)
        assert bad.returncode != 0
        assert bad.stderr.strip(), "a refused bundle says why"

        path.write_bytes(bundle.content)
        other_scope = _verify(path, url, "someone-else")
        assert other_scope.returncode != 0
