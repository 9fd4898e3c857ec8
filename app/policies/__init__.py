"""Policies, one module each. A module defines POLICY; the registry finds it by itself."""

from __future__ import annotations

from app.plugins import discover
from app.policies.base import Needs, Params, Policy, RepoSnapshot, Result

__all__ = ["REGISTRY", "Needs", "Params", "Policy", "RepoSnapshot", "Result", "get_policy"]


REGISTRY: dict[str, Policy] = dict(sorted(
    (policy.type, policy) for policy in discover(__name__, __path__, "POLICY")))


def get_policy(policy_type: str) -> Policy:
    return REGISTRY[policy_type]
