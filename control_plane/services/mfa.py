"""The second factor: TOTP (RFC 6238, pyotp), single-use recovery codes, and the
organisation's rule of which roles must have one.

A TOTP secret is sealed under the master key and bound to its user. A code is accepted
for the previous, current or next 30-second step (clock drift), and only for a step after
the last one accepted, so an overheard code cannot be replayed. Wrong codes count against
a per-user rate limit whatever the client's address.

A member whose role the organisation requires MFA for, and who has none, gets no API
token at login: the login answers 403 `mfa_enrolment_required` with a short-lived
enrolment token (`ken_…`) that the enrolment endpoints accept and nothing else does.

Replacing an active TOTP needs its current code (or a recovery code): the new secret waits
in the key-value store until its first code confirms it, and the old one works until then.
A TOTP is the person's, not one organisation's: a session that came from an SSO login (or
its enrolment token) may not enrol one for an account that is also a member of another
organisation — that organisation's IdP would otherwise choose the factor guarding the rest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass

import pyotp
import segno
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Membership, MfaPolicy, RecoveryCode, TotpCredential
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Forbidden, Unauthenticated
from control_plane.schemas.mfa import MfaPolicyOut, MfaStatus, TotpEnrolment
from control_plane.services import audit, ratelimit
from control_plane.services.audit import Actor
from control_plane.services.crypto import seal, unseal
from control_plane.services.kv import KeyValueStore
from control_plane.settings import Settings

ISSUER_NAME = "Kaizen Studio"
ENROLMENT_PREFIX = "ken_"
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_LENGTH = 10  # ~49 bits each
_DRIFT_STEPS = 1
_TOTP_CODE = re.compile(r"^\d{6}$")


class MfaRequired(Unauthenticated):
    code = "mfa_required"


class MfaInvalid(Unauthenticated):
    code = "mfa_invalid"


class MfaEnrolmentRequired(Forbidden):
    code = "mfa_enrolment_required"


class CurrentFactorRequired(Forbidden):
    """Step-up for a logged-in user (a 403, so no client mistakes it for a lost session)."""

    code = "current_factor_required"


@dataclass(frozen=True)
class Enrolment:
    """Who an enrolment token was issued to."""

    user_id: uuid.UUID
    organization_id: uuid.UUID
    via_sso: bool = False


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _associated(user_id: uuid.UUID) -> bytes:
    # Binds the sealed secret to its user: a row copied onto another user will not open.
    return b"totp:" + user_id.bytes


def _normalize_recovery(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


class SecondFactor:
    def __init__(self, settings: Settings, db: Database, kv: KeyValueStore, master_key: bytes):
        self._settings = settings
        self._db = db
        self._kv = kv
        self._master_key = master_key

    # -- login -----------------------------------------------------------------------------

    async def check_login(
        self,
        user_id: uuid.UUID,
        organization_id: uuid.UUID,
        code: str | None,
        *,
        via_sso: bool = False,
    ) -> None:
        """Pass when the second factor is satisfied; raise what the client must do next."""
        async with self._db.session(organization_id) as session:
            credential = await _confirmed(session, user_id)
            if credential is None:
                if await _required_for(session, user_id):
                    token, ttl = await self._enrolment_token(user_id, organization_id, via_sso)
                    raise MfaEnrolmentRequired(
                        "your role requires MFA in this organisation: enrol TOTP with the "
                        "enrolment token (POST /api/v1/me/mfa/totp), then log in with a code",
                        details={"enrolment_token": token, "expires_in": ttl},
                    )
                return
            if not code:
                raise MfaRequired(
                    "this account has MFA: send `totp` with a code from your authenticator "
                    "or a recovery code",
                    details=[{"field": "totp"}],
                )
            await self._verify(session, credential, code, allow_recovery=True)

    async def enrolment_missing(self, user_id: uuid.UUID, organization_id: uuid.UUID) -> bool:
        """True when the member's role requires MFA and they have not enrolled."""
        async with self._db.session(organization_id) as session:
            if await _confirmed(session, user_id) is not None:
                return False
            return await _required_for(session, user_id)

    async def _enrolment_token(
        self, user_id: uuid.UUID, organization_id: uuid.UUID, via_sso: bool
    ) -> tuple[str, int]:
        token = ENROLMENT_PREFIX + secrets.token_urlsafe(32)
        ttl = self._settings.mfa_enrolment_ttl_seconds
        record = json.dumps({"user": str(user_id), "org": str(organization_id), "sso": via_sso})
        await self._kv.set(f"mfa-enrol:{_sha256(token)}", record, ttl=ttl)
        return token, ttl

    async def resolve_enrolment_token(self, token: str) -> Enrolment:
        record = await self._kv.get(f"mfa-enrol:{_sha256(token)}")
        if record is None:
            raise Unauthenticated("enrolment token is invalid or expired; log in again")
        data = json.loads(record)
        return Enrolment(uuid.UUID(data["user"]), uuid.UUID(data["org"]), bool(data.get("sso")))

    async def forget_enrolment_token(self, token: str) -> None:
        await self._kv.delete(f"mfa-enrol:{_sha256(token)}")

    # -- enrolment ---------------------------------------------------------------------------

    async def mark_sso_session(self, session_id: str) -> None:
        """Remember that a session began with an SSO login (for its refresh tokens' life)."""
        ttl = self._settings.refresh_token_ttl_seconds
        await self._kv.set(f"mfa-sso-session:{session_id}", "1", ttl=ttl)

    async def is_sso_session(self, session_id: str | None) -> bool:
        return bool(session_id) and await self._kv.get(f"mfa-sso-session:{session_id}") is not None

    async def check_enroller(
        self, user_id: uuid.UUID, organization_id: uuid.UUID, via_sso: bool
    ) -> None:
        """An SSO login never sets the factor of an account another organisation shares."""
        if not via_sso:
            return
        async with self._db.session(SYSTEM) as session:
            elsewhere = await session.scalar(
                select(func.count(Membership.id)).where(
                    Membership.user_id == user_id, Membership.organization_id != organization_id
                )
            )
        if elsewhere:
            raise Forbidden(
                "this account is also a member of another organisation: a session from single "
                "sign-on may not enrol or replace its TOTP; log in with your password to do so"
            )

    async def start_enrolment(
        self, session: AsyncSession, user_id: uuid.UUID, email: str, current: str | None = None
    ) -> TotpEnrolment:
        """A new secret to confirm. With TOTP active, only against a current code (or a
        recovery code), and the active one stays until the new one is confirmed."""
        credential = await session.scalar(
            select(TotpCredential).where(TotpCredential.user_id == user_id)
        )
        secret = pyotp.random_base32()
        sealed = seal(self._master_key, secret.encode(), _associated(user_id))
        if credential is not None and credential.confirmed_at is not None:
            if not current:
                raise CurrentFactorRequired(
                    "TOTP is already active: to replace it, send `code` with a current code "
                    "from your authenticator or a recovery code",
                    details=[{"field": "code"}],
                )
            await self._verify(session, credential, current, allow_recovery=True)
            await self._kv.set(
                _replacement_key(user_id),
                base64.b64encode(sealed).decode(),
                ttl=self._settings.mfa_enrolment_ttl_seconds,
            )
        elif credential is None:
            session.add(TotpCredential(user_id=user_id, secret_sealed=sealed))
        else:
            credential.secret_sealed, credential.last_step = sealed, None
        uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER_NAME)
        qr_svg = segno.make(uri, error="m").svg_data_uri(scale=4)
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=qr_svg)

    async def confirm_enrolment(
        self,
        session: AsyncSession,
        actor: Actor,
        organization_id: uuid.UUID,
        user_id: uuid.UUID,
        code: str,
    ) -> list[str]:
        """Activate TOTP (or its replacement) with its first code; returns fresh recovery
        codes (shown once)."""
        credential = await session.scalar(
            select(TotpCredential).where(TotpCredential.user_id == user_id)
        )
        action = "mfa.totp.enable"
        if credential is not None and credential.confirmed_at is not None:
            pending = await self._kv.get(_replacement_key(user_id))
            if pending is None:
                raise Conflict(
                    "no TOTP replacement in progress; start one (POST /api/v1/me/mfa/totp "
                    "with a current code)"
                )
            sealed = base64.b64decode(pending)
            step = await self._check_totp(user_id, sealed, code)
            await self._kv.delete(_replacement_key(user_id))
            credential.secret_sealed, credential.last_step = sealed, step
            credential.confirmed_at = utcnow()
            action = "mfa.totp.replace"
        else:
            if credential is None:
                raise Conflict(
                    "no TOTP enrolment in progress; start one (POST /api/v1/me/mfa/totp)"
                )
            await self._verify(session, credential, code, allow_recovery=False)
            credential.confirmed_at = utcnow()
        codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        session.add_all(
            RecoveryCode(user_id=user_id, code_hash=_sha256(_normalize_recovery(c))) for c in codes
        )
        await audit.record(session, organization_id, actor, action, "user", user_id)
        return codes

    async def disable(
        self,
        session: AsyncSession,
        actor: Actor,
        organization_id: uuid.UUID,
        user_id: uuid.UUID,
        code: str,
    ) -> None:
        credential = await _confirmed(session, user_id)
        if credential is None:
            raise Conflict("TOTP is not active for this account")
        await self._verify(session, credential, code, allow_recovery=True)
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        await session.delete(credential)
        await audit.record(session, organization_id, actor, "mfa.totp.disable", "user", user_id)

    async def status(self, session: AsyncSession, user_id: uuid.UUID) -> MfaStatus:
        credential = await _confirmed(session, user_id)
        remaining = await session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        return MfaStatus(
            totp_enabled=credential is not None,
            recovery_codes_remaining=(remaining or 0) if credential is not None else 0,
            required_for_your_role=await _required_for(session, user_id),
        )

    # -- verification ------------------------------------------------------------------------

    async def _verify(
        self, session: AsyncSession, credential: TotpCredential, code: str, *, allow_recovery: bool
    ) -> None:
        user_id = credential.user_id
        limit_key = f"mfa:{user_id}"
        await ratelimit.hit(
            self._kv,
            limit_key,
            limit=self._settings.mfa_attempts_per_window,
            window=self._settings.mfa_window_seconds,
            what="wrong authentication codes",
        )
        code = code.strip().replace(" ", "")
        if _TOTP_CODE.match(code):
            await self._accept_totp(session, credential, code)
        elif allow_recovery:
            await _use_recovery_code(session, user_id, code)
        else:
            raise MfaInvalid(
                "send the 6-digit code your authenticator shows", details=[{"field": "code"}]
            )
        await ratelimit.reset(self._kv, limit_key)

    async def _check_totp(self, user_id: uuid.UUID, sealed: bytes, code: str) -> int:
        """The step of a right code for a secret not yet stored (a replacement)."""
        limit_key = f"mfa:{user_id}"
        await ratelimit.hit(
            self._kv,
            limit_key,
            limit=self._settings.mfa_attempts_per_window,
            window=self._settings.mfa_window_seconds,
            what="wrong authentication codes",
        )
        step = self._matching_step(user_id, sealed, code.strip())
        if step is None:
            raise MfaInvalid("wrong authentication code")
        await ratelimit.reset(self._kv, limit_key)
        return step

    def _matching_step(self, user_id: uuid.UUID, sealed: bytes, code: str) -> int | None:
        secret = unseal(self._master_key, sealed, _associated(user_id)).decode()
        totp = pyotp.TOTP(secret)
        current = totp.timecode(utcnow())
        return next(
            (
                s
                for s in range(current - _DRIFT_STEPS, current + _DRIFT_STEPS + 1)
                if hmac.compare_digest(totp.generate_otp(s), code)
            ),
            None,
        )

    async def _accept_totp(
        self, session: AsyncSession, credential: TotpCredential, code: str
    ) -> None:
        step = self._matching_step(credential.user_id, credential.secret_sealed, code)
        if step is None:
            raise MfaInvalid("wrong authentication code")
        # Compare-and-set: of two requests racing with one code, exactly one wins.
        result = await session.execute(
            update(TotpCredential)
            .where(
                TotpCredential.id == credential.id,
                or_(TotpCredential.last_step.is_(None), TotpCredential.last_step < step),
            )
            .values(last_step=step)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise MfaInvalid("this code was already used; wait for the next one")
        credential.last_step = step


def _replacement_key(user_id: uuid.UUID) -> str:
    return f"mfa-replace:{user_id}"


async def _use_recovery_code(session: AsyncSession, user_id: uuid.UUID, code: str) -> None:
    result = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == _sha256(_normalize_recovery(code)),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise MfaInvalid("wrong, unknown or already used recovery code")


async def _confirmed(session: AsyncSession, user_id: uuid.UUID) -> TotpCredential | None:
    return await session.scalar(
        select(TotpCredential).where(
            TotpCredential.user_id == user_id, TotpCredential.confirmed_at.is_not(None)
        )
    )


async def _required_for(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the member's role in the session's organisation requires MFA."""
    role = await session.scalar(select(Membership.role).where(Membership.user_id == user_id))
    required = await session.scalar(select(MfaPolicy.required_roles))
    return role is not None and role in (required or [])


# -- the organisation's rule --------------------------------------------------------------


async def members_without_mfa(session: AsyncSession, roles: list[str]) -> list[uuid.UUID]:
    """Members of the session's organisation in `roles` who have no active TOTP."""
    enrolled = select(TotpCredential.user_id).where(TotpCredential.confirmed_at.is_not(None))
    rows = await session.scalars(
        select(Membership.user_id).where(
            Membership.role.in_(roles), Membership.user_id.not_in(enrolled)
        )
    )
    return list(rows)


async def get_policy(session: AsyncSession) -> MfaPolicyOut:
    policy = await session.scalar(select(MfaPolicy))
    if policy is None:
        return MfaPolicyOut(required_roles=[], updated_at=None)
    return MfaPolicyOut(required_roles=policy.required_roles, updated_at=policy.updated_at)


async def set_policy(
    session: AsyncSession, actor: Actor, organization_id: uuid.UUID, required_roles: list[str]
) -> MfaPolicyOut:
    roles = sorted(set(required_roles))
    now = utcnow()
    policy = await session.scalar(select(MfaPolicy))
    before = policy.required_roles if policy else []
    if policy is None:
        policy = MfaPolicy(required_roles=roles, updated_at=now)
        session.add(policy)
    else:
        policy.required_roles, policy.updated_at = roles, now
    await audit.record(
        session,
        organization_id,
        actor,
        "organization.mfa_policy.update",
        "organization",
        organization_id,
        required_roles=roles,
        previous=before,
    )
    return MfaPolicyOut(required_roles=roles, updated_at=now)
