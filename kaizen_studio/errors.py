"""The error of `kaizen-studio up` and its parts (the demo, the Envoy config)."""

from __future__ import annotations


class UpError(Exception):
    """Something the user must fix before `up` can run; the message says what."""
