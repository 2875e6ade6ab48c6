"""Bodies of the MFA, browser-session and password routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from control_plane.schemas.base import Input, Output
from control_plane.schemas.identity import Password, Role, TokenResponse

TotpCode = Annotated[str, StringConstraints(pattern=r"^\d{6}$")]
# A 6-digit TOTP code or a recovery code (`xxxxx-xxxxx`).
SecondFactorCode = Annotated[str, StringConstraints(min_length=6, max_length=32)]


class TotpEnrolment(Output):
    secret: str = Field(description="Base32; for authenticators that cannot scan the QR code.")
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as a QR code, an SVG data URI.")


class TotpStart(Input):
    code: SecondFactorCode | None = Field(
        default=None,
        description="Required to replace an active TOTP: a current code or a recovery code.",
    )


class TotpConfirm(Input):
    code: TotpCode


class TotpConfirmed(Output):
    recovery_codes: list[str] = Field(description="Shown once; each works once.")
    tokens: TokenResponse | None = Field(
        default=None, description="When enrolling with an enrolment token: your session."
    )


class MfaCode(Input):
    code: SecondFactorCode


class MfaStatus(Output):
    totp_enabled: bool
    recovery_codes_remaining: int
    required_for_your_role: bool


class MfaPolicyUpdate(Input):
    required_roles: list[Role] = Field(max_length=16)


class MfaPolicyOut(Output):
    required_roles: list[str]
    updated_at: datetime | None


class SessionOut(Output):
    id: uuid.UUID
    kind: Literal["token", "cookie"]
    created_at: datetime
    last_seen_at: datetime | None
    user_agent: str | None
    source_ip: str | None
    current: bool


class BrowserSession(Output):
    user_id: uuid.UUID
    organization_id: uuid.UUID
    csrf_token: str = Field(description="Also the `kaizen_csrf` cookie; echo it in X-CSRF-Token.")
    expires_in: int


class PasswordChange(Input):
    current: Password
    new: Password
