"""An organisation's owner on a running control plane, as the end-to-end tests start one."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.e2e import sidecar_procs as procs


def unique(name: str) -> str:
    """`name` with a random suffix: on the shared control plane an email or an organisation
    name a test picks is no other test's (`unique("dev") + "@example.com"`)."""
    return f"{name}-{secrets.token_hex(3)}"


def sign_up(
    control_plane: procs.ControlPlane,
    request: pytest.FixtureRequest,
    email: str,
    organization: str = "Acme",
) -> tuple[httpx.Client, dict[str, Any], dict[str, str]]:
    """(a client of the control plane, closed with the test; the sign-up's answer; the
    owner's Authorization header)."""
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    request.addfinalizer(cp.close)
    answer = cp.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "organization": organization},
    )
    assert answer.status_code == 201, answer.text
    owner: dict[str, Any] = answer.json()
    return cp, owner, {"Authorization": f"Bearer {owner['access_token']}"}
