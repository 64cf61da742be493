"""Who is acting: an agent, an API token, a contact (widget/email) or the system."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.models import ActorType, Role
from app.services.errors import Forbidden


@dataclass(frozen=True)
class Actor:
    workspace_id: int
    type: ActorType
    id: int | None = None
    name: str = ""
    role: Role = Role.agent
    team_ids: frozenset[int] = field(default_factory=frozenset)
    # Agents are limited to their teams' tickets; integrations (tokens) are not.
    team_scoped: bool = False

    @classmethod
    def system(cls, workspace_id: int, name: str = "System") -> Actor:
        return cls(workspace_id=workspace_id, type=ActorType.system, name=name, role=Role.admin)

    @classmethod
    def contact(cls, workspace_id: int, contact_id: int, name: str) -> Actor:
        return cls(workspace_id=workspace_id, type=ActorType.contact, id=contact_id, name=name)

    @property
    def agent_id(self) -> int | None:
        return self.id if self.type is ActorType.agent else None

    def require(self, role: Role) -> None:
        if self.type is ActorType.contact or not self.role.at_least(role):
            raise Forbidden(f"this action needs the {role.value} role")

    @property
    def sees_all_tickets(self) -> bool:
        return not self.team_scoped or self.role.at_least(Role.supervisor)
