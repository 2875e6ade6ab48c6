"""Who is calling, for which organisation, and what their role lets them do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from control_plane.errors import Forbidden
from control_plane.services import roles


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" | "api_key"
    id: uuid.UUID  # the user's or the API key's id
    organization_id: uuid.UUID
    role: str
    label: str  # email or key name, for audit trails
    session_id: str | None = None
    scopes: tuple[str, ...] = field(default=())

    @property
    def subject(self) -> str:
        """The policy subject, as CONTRACTS.md spells it."""
        return f"user:{self.label}" if self.kind == "user" else f"apikey:{self.label}"

    def can(self, collection: str, action: str) -> bool:
        if not roles.role_allows(self.role, collection, action):
            return False
        return not self.scopes or roles.scope_allows(self.scopes, collection, action)

    def require(self, collection: str, action: str) -> None:
        if not self.can(collection, action):
            raise Forbidden(f"role {self.role!r} may not {action} {collection}")
