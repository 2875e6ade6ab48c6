"""Fixtures of the security suite: each test performs one attack through the real path.

The control-plane stacks (embedded SQLite and PostgreSQL + Redis) come from tests/conftest.py;
the real-process fixtures (a control-plane process on its own database) from tests/e2e.
"""

from __future__ import annotations

from tests.e2e.conftest import control_plane, database
from tests.integration.conftest import clock

__all__ = ["clock", "control_plane", "database"]
