"""TOTP helpers shared by the MFA and SSO tests: a clock the control plane's check reads,
codes at that clock, and enrolment through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp


class Clock:
    """The time the control plane's TOTP check sees, so steps are the test's to choose."""

    def __init__(self) -> None:
        # Five seconds into a 30-second step: no step boundary is crossed by accident.
        self.now = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)

    def advance(self, seconds: int = 30) -> None:
        self.now += timedelta(seconds=seconds)


def code(secret: str, clock: Clock) -> str:
    return pyotp.TOTP(secret).at(clock.now)


async def enrol(
    client: httpx.AsyncClient, headers: dict[str, str], clock: Clock
) -> tuple[str, list[str], dict[str, Any]]:
    started = await client.post("/api/v1/me/mfa/totp", headers=headers)
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    confirmed = await client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": code(secret, clock)}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    clock.advance()  # the confirming code's step is spent
    return secret, confirmed.json()["recovery_codes"], confirmed.json()
