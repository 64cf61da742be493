"""Admin actions are written to the audit log in the same transaction."""

from __future__ import annotations

from typing import Any

from app.events import UnitOfWork
from app.models import AuditLog
from app.services.actors import Actor


def record(
    uow: UnitOfWork,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: int | None,
    details: dict[str, Any],
) -> None:
    uow.session.add(
        AuditLog(
            workspace_id=actor.workspace_id,
            actor_type=actor.type.value,
            actor_id=actor.id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details={k: (v.value if hasattr(v, "value") else v) for k, v in details.items()},
        )
    )
