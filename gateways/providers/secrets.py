"""Credentials for providers: an interface, and environment variables behind it for now.

The secrets backend of the control plane (Vault or the database) will implement the same
`resolve(name)`. Values are never logged; errors name the secret, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Protocol

from gateways.errors import ProviderError


class SecretResolver(Protocol):
    def resolve(self, name: str) -> str: ...


class EnvSecretResolver:
    """`resolve("openai-key")` reads `KAIZEN_SECRET_OPENAI_KEY` (prefix configurable)."""

    def __init__(self, prefix: str = "KAIZEN_SECRET_", environ: Mapping[str, str] | None = None):
        self._prefix = prefix
        self._environ = os.environ if environ is None else environ

    def variable(self, name: str) -> str:
        return self._prefix + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    def resolve(self, name: str) -> str:
        value = self._environ.get(self.variable(name))
        if not value:
            raise ProviderError(f"secret {name!r} is not configured (set {self.variable(name)})")
        return value
