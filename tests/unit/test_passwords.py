"""Password hashing keeps its production cost (the in-process suites hash at a test's cost:
tests/conftest.py `cheap_password_hashing`)."""

from __future__ import annotations

from argon2 import PasswordHasher, Type, extract_parameters

from control_plane.services import passwords
from tests.conftest import PASSWORD, PRODUCTION_HASHER


def test_passwords_are_hashed_with_argon2id_at_the_production_cost() -> None:
    production = extract_parameters(PRODUCTION_HASHER.hash(PASSWORD))
    assert production.type is Type.ID
    # RFC 9106's second recommendation and OWASP's floor: 64 MiB, 3 passes.
    assert production.memory_cost >= 64 * 1024
    assert production.time_cost >= 3
    # The unknown-email path verifies against a written-out hash: of the same cost, or an
    # unknown email would answer faster than a known one.
    assert not PRODUCTION_HASHER.check_needs_rehash(passwords._DUMMY_HASH)


def test_a_hash_at_the_production_cost_still_verifies_under_the_tests_hasher() -> None:
    """The parameters travel with the hash: a stored production hash is checked as such."""
    stored = PasswordHasher().hash(PASSWORD)
    assert passwords.verify_password(stored, PASSWORD)
    assert not passwords.verify_password(stored, PASSWORD + "!")
    assert not passwords.verify_password(None, PASSWORD)
