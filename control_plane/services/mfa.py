"""The second factor: TOTP (RFC 6238, pyotp), single-use recovery codes, and the
organisation's rule of which roles must have one.

A TOTP secret is sealed under the master key and bound to its user. A code is accepted
for the previous, current or next 30-second step (clock drift), and only for a step after
the last one accepted, so an overheard code cannot be replayed. Wrong codes count against
a per-user rate limit whatever the client's address.

A member whose role the organisation requires MFA for, and who has none, gets no API
token at login: the login answers 403 `mfa_enrolment_required` with a short-lived
enrolment token (`ken_…`) that the enrolment endpoints accept and nothing else does.
"""

from __future__ import annotations

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
from control_plane.db.session import Database
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


@dataclass(frozen=True)
class Enrolment:
    """Who an enrolment token was issued to."""

    user_id: uuid.UUID
    organization_id: uuid.UUID


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
        self, user_id: uuid.UUID, organization_id: uuid.UUID, code: str | None
    ) -> None:
        """Pass when the second factor is satisfied; raise what the client must do next."""
        async with self._db.session(organization_id) as session:
            credential = await _confirmed(session, user_id)
            if credential is None:
                if await _required_for(session, user_id):
                    token, ttl = await self._enrolment_token(user_id, organization_id)
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
        self, user_id: uuid.UUID, organization_id: uuid.UUID
    ) -> tuple[str, int]:
        token = ENROLMENT_PREFIX + secrets.token_urlsafe(32)
        ttl = self._settings.mfa_enrolment_ttl_seconds
        record = json.dumps({"user": str(user_id), "org": str(organization_id)})
        await self._kv.set(f"mfa-enrol:{_sha256(token)}", record, ttl=ttl)
        return token, ttl

    async def resolve_enrolment_token(self, token: str) -> Enrolment:
        record = await self._kv.get(f"mfa-enrol:{_sha256(token)}")
        if record is None:
            raise Unauthenticated("enrolment token is invalid or expired; log in again")
        data = json.loads(record)
        return Enrolment(uuid.UUID(data["user"]), uuid.UUID(data["org"]))

    async def forget_enrolment_token(self, token: str) -> None:
        await self._kv.delete(f"mfa-enrol:{_sha256(token)}")

    # -- enrolment ---------------------------------------------------------------------------

    async def start_enrolment(
        self, session: AsyncSession, user_id: uuid.UUID, email: str
    ) -> TotpEnrolment:
        credential = await session.scalar(
            select(TotpCredential).where(TotpCredential.user_id == user_id)
        )
        if credential is not None and credential.confirmed_at is not None:
            raise Conflict(
                "TOTP is already active; disable it (DELETE /api/v1/me/mfa/totp) to replace it"
            )
        secret = pyotp.random_base32()
        sealed = seal(self._master_key, secret.encode(), _associated(user_id))
        if credential is None:
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
        """Activate TOTP with its first code; returns fresh recovery codes (shown once)."""
        credential = await session.scalar(
            select(TotpCredential).where(TotpCredential.user_id == user_id)
        )
        if credential is None or credential.confirmed_at is not None:
            raise Conflict("no TOTP enrolment in progress; start one (POST /api/v1/me/mfa/totp)")
        await self._verify(session, credential, code, allow_recovery=False)
        credential.confirmed_at = utcnow()
        codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        session.add_all(
            RecoveryCode(user_id=user_id, code_hash=_sha256(_normalize_recovery(c))) for c in codes
        )
        await audit.record(session, organization_id, actor, "mfa.totp.enable", "user", user_id)
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

    async def _accept_totp(
        self, session: AsyncSession, credential: TotpCredential, code: str
    ) -> None:
        secret = unseal(
            self._master_key, credential.secret_sealed, _associated(credential.user_id)
        ).decode()
        totp = pyotp.TOTP(secret)
        current = totp.timecode(utcnow())
        step = next(
            (
                s
                for s in range(current - _DRIFT_STEPS, current + _DRIFT_STEPS + 1)
                if hmac.compare_digest(totp.generate_otp(s), code)
            ),
            None,
        )
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
