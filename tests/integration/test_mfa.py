"""TOTP enrolment, login with a second factor, recovery codes, and MFA required for roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pyotp
from sqlalchemy import select

from control_plane.db.models import TotpCredential
from control_plane.db.session import SYSTEM
from tests.conftest import PASSWORD, Account, Stack, member
from tests.integration.mfa_support import Clock, code, enrol


async def login(client: httpx.AsyncClient, email: str, totp: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if totp is not None:
        body["totp"] = totp
    return await client.post("/api/v1/auth/login", json=body)


async def test_enrolment_gives_secret_uri_and_qr_and_seals_the_secret(
    client: httpx.AsyncClient, stack: Stack, owner: Account, clock: Clock
) -> None:
    started = await client.post("/api/v1/me/mfa/totp", headers=owner.headers)
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/Kaizen%20Studio:")
    assert pyotp.parse_uri(body["otpauth_uri"]).secret == body["secret"]
    assert body["qr_svg"].startswith("data:image/svg+xml")
    async with stack.db.session(SYSTEM) as session:
        row = await session.scalar(select(TotpCredential))
    assert row is not None
    assert body["secret"].encode() not in row.secret_sealed
    # Not active until confirmed: login still needs no code.
    assert (await login(client, owner.email)).status_code == 200
    status = await client.get("/api/v1/me/mfa", headers=owner.headers)
    assert status.json()["totp_enabled"] is False


async def test_wrong_confirmation_code_does_not_activate(
    client: httpx.AsyncClient, owner: Account, clock: Clock
) -> None:
    started = await client.post("/api/v1/me/mfa/totp", headers=owner.headers)
    secret = started.json()["secret"]
    wrong = f"{(int(code(secret, clock)) + 1) % 1_000_000:06d}"
    refused = await client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": wrong}, headers=owner.headers
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "mfa_invalid"
    malformed = await client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": "12ab"}, headers=owner.headers
    )
    assert malformed.status_code == 422
    assert malformed.json()["error"]["details"][0]["field"] == "code"
    assert (await login(client, owner.email)).status_code == 200


async def test_login_asks_for_the_code_refuses_wrong_and_replayed_codes(
    client: httpx.AsyncClient, owner: Account, clock: Clock
) -> None:
    secret, codes, _ = await enrol(client, owner.headers, clock)
    assert len(codes) == 10
    assert len(set(codes)) == 10

    missing = await login(client, owner.email)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "mfa_required"

    current = code(secret, clock)
    wrong = await login(client, owner.email, f"{(int(current) + 1) % 1_000_000:06d}")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "mfa_invalid"

    ok = await login(client, owner.email, current)
    assert ok.status_code == 200, ok.text
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {ok.json()['access_token']}"}
    )
    assert me.status_code == 200

    replayed = await login(client, owner.email, current)
    assert replayed.status_code == 401
    assert "already used" in replayed.json()["error"]["message"]

    clock.advance()
    assert (await login(client, owner.email, code(secret, clock))).status_code == 200
    # An older step than the last accepted one is refused too, though within the drift window.
    earlier = pyotp.TOTP(secret).at(clock.now - timedelta(seconds=30))
    assert (await login(client, owner.email, earlier)).status_code == 401


async def test_a_recovery_code_works_once(
    client: httpx.AsyncClient, owner: Account, clock: Clock
) -> None:
    _, codes, _ = await enrol(client, owner.headers, clock)
    first = await login(client, owner.email, codes[0].upper())
    assert first.status_code == 200, first.text
    again = await login(client, owner.email, codes[0])
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "mfa_invalid"
    status = await client.get("/api/v1/me/mfa", headers=owner.headers)
    assert status.json() == {
        "totp_enabled": True,
        "recovery_codes_remaining": 9,
        "required_for_your_role": False,
    }


async def test_wrong_codes_are_rate_limited_per_user(
    client: httpx.AsyncClient, stack: Stack, owner: Account, clock: Clock
) -> None:
    secret, _, _ = await enrol(client, owner.headers, clock)
    for _ in range(stack.settings.mfa_attempts_per_window):
        assert (await login(client, owner.email, "000000")).status_code == 401
    limited = await login(client, owner.email, code(secret, clock))
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


async def test_disabling_needs_a_valid_code(
    client: httpx.AsyncClient, owner: Account, clock: Clock
) -> None:
    secret, _, _ = await enrol(client, owner.headers, clock)
    again = await client.post("/api/v1/me/mfa/totp", headers=owner.headers)
    assert again.status_code == 403  # replacing an active TOTP needs its current code
    assert again.json()["error"]["code"] == "current_factor_required"
    refused = await client.request(
        "DELETE", "/api/v1/me/mfa/totp", json={"code": "123456"}, headers=owner.headers
    )
    assert refused.status_code == 401
    disabled = await client.request(
        "DELETE", "/api/v1/me/mfa/totp", json={"code": code(secret, clock)}, headers=owner.headers
    )
    assert disabled.status_code == 204
    assert (await login(client, owner.email)).status_code == 200
    events = await client.get("/api/v1/audit-events", headers=owner.headers)
    actions = [e["action"] for e in events.json()["items"]]
    assert {"mfa.totp.enable", "mfa.totp.disable"} <= set(actions)


async def test_api_keys_have_no_second_factor(client: httpx.AsyncClient, owner: Account) -> None:
    key = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=owner.headers)
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    assert (await client.post("/api/v1/me/mfa/totp", headers=headers)).status_code == 403


async def test_roles_that_require_mfa_get_only_enrolment_until_enrolled(
    client: httpx.AsyncClient, owner: Account, clock: Clock
) -> None:
    admin = await member(client, owner, "admin")
    developer = await member(client, owner, "developer")

    forbidden = await client.put(
        "/api/v1/organization/mfa", json={"required_roles": ["admin"]}, headers=developer.headers
    )
    assert forbidden.status_code == 403
    bad = await client.put(
        "/api/v1/organization/mfa", json={"required_roles": ["emperor"]}, headers=owner.headers
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"].startswith("required_roles")
    policy = await client.put(
        "/api/v1/organization/mfa",
        json={"required_roles": ["admin", "security_admin"]},
        headers=owner.headers,
    )
    assert policy.status_code == 200, policy.text
    assert policy.json()["required_roles"] == ["admin", "security_admin"]
    readable = await client.get("/api/v1/organization/mfa", headers=developer.headers)
    assert readable.json()["required_roles"] == ["admin", "security_admin"]

    # Roles outside the rule are unaffected.
    developer_login = await login(client, developer.email)
    assert developer_login.status_code == 200
    developer.refresh_token = developer_login.json()["refresh_token"]

    # The admin's session ended with the rule; the developer's did not.
    assert (await client.get("/api/v1/me", headers=admin.headers)).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": admin.refresh_token}
    )
    assert refreshed.status_code == 401
    assert (await client.get("/api/v1/me", headers=developer.headers)).status_code == 200
    # Promoted into a role that needs MFA: the session cannot be refreshed into new tokens.
    # (admin holds all of developer's permissions: a promotion. A move that drops any, like
    # developer → security_admin, is a demotion and ends the sessions outright: members.py.)
    promoted = await client.patch(
        f"/api/v1/users/{developer.user_id}",
        json={"role": "admin"},
        headers=owner.headers,
    )
    assert promoted.status_code == 200, promoted.text
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": developer.refresh_token}
    )
    assert refreshed.status_code == 403
    assert refreshed.json()["error"]["code"] == "mfa_enrolment_required"
    assert (await login(client, developer.email)).status_code == 403

    refused = await login(client, admin.email)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "mfa_enrolment_required"
    assert "access_token" not in refused.text
    enrolment = {"Authorization": f"Bearer {error['details']['enrolment_token']}"}
    # The enrolment token opens enrolment and nothing else.
    assert (await client.get("/api/v1/me", headers=enrolment)).status_code == 401
    assert (await client.get("/api/v1/users", headers=enrolment)).status_code == 401

    _, codes, confirmed = await enrol(client, enrolment, clock)
    assert len(codes) == 10
    tokens = confirmed["tokens"]
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["role"] == "admin"
    # Spent with the confirmation.
    assert (await client.post("/api/v1/me/mfa/totp", headers=enrolment)).status_code == 401
    assert (await login(client, admin.email)).json()["error"]["code"] == "mfa_required"

    events = await client.get("/api/v1/audit-events", headers=owner.headers)
    assert "organization.mfa_policy.update" in [e["action"] for e in events.json()["items"]]
