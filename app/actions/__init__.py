"""Actions, one module each. A module defines ACTION; the registry finds it by itself."""

from __future__ import annotations

from app.actions.base import Action, ActionContext, Outcome, ViolationView

__all__ = ["REGISTRY", "Action", "ActionContext", "Outcome", "ViolationView"]


from app.plugins import discover

# In execution order: an issue is filed before a repository is archived.
REGISTRY: dict[str, Action] = {
    action.name: action
    for action in sorted(discover(__name__, __path__, "ACTION"), key=lambda a: a.order)}
