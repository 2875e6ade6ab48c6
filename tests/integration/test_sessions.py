"""Browser sessions (cookie + CSRF), the session list, revocation, and password change."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import PASSWORD, Account, Stack, signup

NEW_PASSWORD = "a different, longer passphrase 42"


@dataclass
class Browser:
    session: str
    csrf: str

    def cookies(self, *, csrf_cookie: bool = True) -> dict[str, str]:
        cookie = f"kaizen_session={self.session}"
        if csrf_cookie:
            cookie += f"; kaizen_csrf={self.csrf}"
        return {"Cookie": cookie}

    def writing(self) -> dict[str, str]:
        return {**self.cookies(), "X-CSRF-Token": self.csrf}


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


async def browser_login(
    client: httpx.AsyncClient, email: str, user_agent: str = "Firefox/140"
) -> Browser:
    response = await client.post(
        "/api/v1/auth/session",
        json={"email": email, "password": PASSWORD},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    cookies = _set_cookies(response)
    session = cookies["kaizen_session"].split(";", 1)[0].split("=", 1)[1]
    csrf = cookies["kaizen_csrf"].split(";", 1)[0].split("=", 1)[1]
    assert response.json()["csrf_token"] == csrf
    client.cookies.clear()  # every test request names its cookies itself
    return Browser(session, csrf)


async def test_cookie_attributes_and_reads_need_no_csrf(
    client: httpx.AsyncClient, owner: Account
) -> None:
    response = await client.post(
        "/api/v1/auth/session", json={"email": owner.email, "password": PASSWORD}
    )
    cookies = {name: value.lower() for name, value in _set_cookies(response).items()}
    session, csrf = cookies["kaizen_session"], cookies["kaizen_csrf"]
    for attribute in ("secure", "samesite=strict", "path=/", "max-age="):
        assert attribute in session
        assert attribute in csrf
    assert "httponly" in session
    assert "httponly" not in csrf, "the page must read the CSRF cookie to echo it"
    client.cookies.clear()

    browser = await browser_login(client, owner.email)
    me = await client.get("/api/v1/me", headers=browser.cookies())
    assert me.status_code == 200
    assert me.json()["label"] == owner.email
    bogus = await client.get("/api/v1/me", headers={"Cookie": "kaizen_session=forged"})
    assert bogus.status_code == 401


async def test_cookie_writes_need_the_csrf_token(client: httpx.AsyncClient, owner: Account) -> None:
    browser = await browser_login(client, owner.email)
    team = {"name": "sre"}

    missing = await client.post("/api/v1/teams", json=team, headers=browser.cookies())
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "csrf_failed"
    header_only = await client.post(
        "/api/v1/teams",
        json=team,
        headers={**browser.cookies(csrf_cookie=False), "X-CSRF-Token": browser.csrf},
    )
    assert header_only.status_code == 403
    # A cookie planted by an attacker, echoed consistently, is still not this session's.
    planted = await client.post(
        "/api/v1/teams",
        json=team,
        headers={
            "Cookie": f"kaizen_session={browser.session}; kaizen_csrf=planted",
            "X-CSRF-Token": "planted",
        },
    )
    assert planted.status_code == 403
    assert (await client.get("/api/v1/teams", headers=owner.headers)).json()["items"] == []

    created = await client.post("/api/v1/teams", json=team, headers=browser.writing())
    assert created.status_code == 201, created.text
    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    assert "team.create" in [e["action"] for e in events]

    # Bearer requests are unaffected, even with a session cookie alongside.
    bearer = await client.post(
        "/api/v1/teams",
        json={"name": "platform"},
        headers={**owner.headers, **browser.cookies(csrf_cookie=False)},
    )
    assert bearer.status_code == 201


async def test_browser_logout_ends_the_cookie(client: httpx.AsyncClient, owner: Account) -> None:
    browser = await browser_login(client, owner.email)
    assert (
        await client.delete("/api/v1/auth/session", headers=browser.cookies())
    ).status_code == 403
    out = await client.delete("/api/v1/auth/session", headers=browser.writing())
    assert out.status_code == 204
    assert (await client.get("/api/v1/me", headers=browser.cookies())).status_code == 401


async def test_list_and_revoke_sessions(client: httpx.AsyncClient, owner: Account) -> None:
    browser = await browser_login(client, owner.email, "Chromium/150")
    login = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    )
    laptop = {"Authorization": f"Bearer {login.json()['access_token']}"}

    listed = await client.get("/api/v1/me/sessions", headers=owner.headers)
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 3
    assert [s["current"] for s in sessions].count(True) == 1
    cookie = next(s for s in sessions if s["kind"] == "cookie")
    assert cookie["user_agent"] == "Chromium/150"
    assert cookie["source_ip"] == "203.0.113.7"
    assert cookie["last_seen_at"] is not None

    revoked = await client.delete(f"/api/v1/me/sessions/{cookie['id']}", headers=owner.headers)
    assert revoked.status_code == 204
    assert (await client.get("/api/v1/me", headers=browser.cookies())).status_code == 401
    again = await client.delete(f"/api/v1/me/sessions/{cookie['id']}", headers=owner.headers)
    assert again.status_code == 404

    others = await client.delete("/api/v1/me/sessions", headers=owner.headers)
    assert others.json() == {"revoked": 1}
    assert (await client.get("/api/v1/me", headers=laptop)).status_code == 401
    assert (await client.get("/api/v1/me", headers=owner.headers)).status_code == 200
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert refreshed.status_code == 401
    remaining = (await client.get("/api/v1/me/sessions", headers=owner.headers)).json()
    assert [s["current"] for s in remaining] == [True]


async def test_someone_elses_session_is_not_found(client: httpx.AsyncClient) -> None:
    alice, bob = await signup(client, "Alice Corp"), await signup(client, "Bob Corp")
    alices = (await client.get("/api/v1/me/sessions", headers=alice.headers)).json()
    response = await client.delete(f"/api/v1/me/sessions/{alices[0]['id']}", headers=bob.headers)
    assert response.status_code == 404
    assert (await client.get("/api/v1/me", headers=alice.headers)).status_code == 200


async def test_password_change_revokes_every_session_and_refresh_token(
    client: httpx.AsyncClient, owner: Account
) -> None:
    browser = await browser_login(client, owner.email)
    wrong = await client.post(
        "/api/v1/me/password",
        json={"current": "not my password at all", "new": NEW_PASSWORD},
        headers=owner.headers,
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["details"][0]["field"] == "current"
    weak = await client.post(
        "/api/v1/me/password", json={"current": PASSWORD, "new": "short"}, headers=owner.headers
    )
    assert weak.status_code == 422
    assert weak.json()["error"]["details"][0]["field"] == "new"

    changed = await client.post(
        "/api/v1/me/password",
        json={"current": PASSWORD, "new": NEW_PASSWORD},
        headers=owner.headers,
    )
    assert changed.status_code == 204, changed.text
    assert (await client.get("/api/v1/me", headers=owner.headers)).status_code == 401
    assert (await client.get("/api/v1/me", headers=browser.cookies())).status_code == 401
    old_refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token}
    )
    assert old_refresh.status_code == 401

    old = await client.post("/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200
    headers = {"Authorization": f"Bearer {new.json()['access_token']}"}
    events = (await client.get("/api/v1/audit-events", headers=headers)).json()["items"]
    assert "user.password_change" in [e["action"] for e in events]


async def test_api_keys_have_no_sessions(client: httpx.AsyncClient, owner: Account) -> None:
    key = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=owner.headers)
    headers = {"Authorization": f"Bearer {key.json()['key']}"}
    assert (await client.get("/api/v1/me/sessions", headers=headers)).status_code == 403


async def test_secure_flag_can_be_turned_off_for_plain_http_development(
    client: httpx.AsyncClient, stack: Stack, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.settings, "session_cookie_secure", False)
    response = await client.post(
        "/api/v1/auth/session", json={"email": owner.email, "password": PASSWORD}
    )
    assert response.status_code == 200
    for header in _set_cookies(response).values():
        assert "secure" not in header.lower()
        assert "samesite=strict" in header.lower()
    # Over plain http the client's own cookie jar now carries the session, as a browser would.
    me = await client.get("/api/v1/me")
    assert me.status_code == 200
    client.cookies.clear()
