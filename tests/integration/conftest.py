"""Fixtures shared by the integration tests (the stacks are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from control_plane.services import mfa
from tests.integration.billing_support import local_stripe, stripe_on  # noqa: F401  (fixtures)
from tests.integration.mfa_support import Clock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The time the control plane's TOTP check sees, moved only by the test."""
    clock = Clock()
    monkeypatch.setattr(mfa, "utcnow", lambda: clock.now)
    return clock
