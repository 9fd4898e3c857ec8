"""Actions, one module each. A module defines ACTION; the registry finds it by itself."""

from __future__ import annotations

import importlib
import pkgutil

from app.actions.base import Action, ActionContext, Outcome, ViolationView

__all__ = ["REGISTRY", "Action", "ActionContext", "Outcome", "ViolationView"]


def _discover() -> dict[str, Action]:
    found: dict[str, Action] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        action: Action | None = getattr(module, "ACTION", None)
        if action is not None:
            found[action.name] = action
    return dict(sorted(found.items(), key=lambda kv: kv[1].order))


REGISTRY: dict[str, Action] = _discover()
