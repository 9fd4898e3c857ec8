"""Policies, one module each. A module defines POLICY; the registry finds it by itself."""

from __future__ import annotations

import importlib
import pkgutil

from app.policies.base import Needs, Policy, RepoSnapshot, Result

__all__ = ["REGISTRY", "Needs", "Policy", "RepoSnapshot", "Result", "get_policy"]


def _discover() -> dict[str, Policy]:
    found: dict[str, Policy] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        policy: Policy | None = getattr(module, "POLICY", None)
        if policy is not None:
            found[policy.type] = policy
    return dict(sorted(found.items()))


REGISTRY: dict[str, Policy] = _discover()


def get_policy(policy_type: str) -> Policy:
    return REGISTRY[policy_type]
