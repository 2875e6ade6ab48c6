"""Password hashing keeps its production cost (the in-process suites hash at a test's cost:
tests/conftest.py `cheap_password_hashing`)."""

from __future__ import annotations

from argon2 import PasswordHasher, Type, extract_parameters

from control_plane.services import passwords
from tests.conftest import PASSWORD


def test_passwords_are_hashed_with_argon2id_at_the_production_cost() -> None:
    # The module's timing-equaliser hash is made at import by the production hasher.
    production = extract_parameters(passwords._DUMMY_HASH)
    assert production.type is Type.ID
    # RFC 9106's second recommendation and OWASP's floor: 64 MiB, 3 passes.
    assert production.memory_cost >= 64 * 1024
    assert production.time_cost >= 3


def test_a_hash_at_the_production_cost_still_verifies_under_the_tests_hasher() -> None:
    """The parameters travel with the hash: a stored production hash is checked as such."""
    stored = PasswordHasher().hash(PASSWORD)
    assert passwords.verify_password(stored, PASSWORD)
    assert not passwords.verify_password(stored, PASSWORD + "!")
    assert not passwords.verify_password(None, PASSWORD)
