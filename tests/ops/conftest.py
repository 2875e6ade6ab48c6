"""The operations tests run the real control plane of the end-to-end tests."""

from tests.e2e.conftest import control_plane, database

__all__ = ["control_plane", "database"]
