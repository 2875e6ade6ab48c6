"""Password hashing (argon2id) and the strength rule for new passwords."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from control_plane.errors import Invalid

_hasher = PasswordHasher()
# Verified against when the email is unknown, so both paths cost the same: a hash of a
# throw-away password at the production cost (the cost travels in the hash). Written out,
# not made at import, where it cost ~0.1 s of CPU in every process importing the app;
# tests/unit/test_passwords.py fails if `_hasher`'s cost moves away from it.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$Z+EpQUlqm4icwOQ68EKYmQ$"
    "fBeSYHYEa/RtHB0pMGxWhXJKfG4B3kg5vjdfI09tQao"
)

MIN_LENGTH = 12
MAX_LENGTH = 256


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def check_strength(password: str, *, email: str) -> None:
    problem = None
    if len(password) < MIN_LENGTH:
        problem = f"must be at least {MIN_LENGTH} characters"
    elif len(password) > MAX_LENGTH:
        problem = f"must be at most {MAX_LENGTH} characters"
    elif len(set(password)) < 5:
        problem = "uses too few distinct characters"
    elif email.split("@", 1)[0].lower() in password.lower() and len(email.split("@")[0]) > 3:
        problem = "must not contain your email address"
    if problem:
        raise Invalid(
            f"weak password: {problem}",
            details=[{"field": "password", "message": f"password {problem}"}],
        )
