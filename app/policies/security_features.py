"""GitHub's security features are on: secret scanning, push protection, Dependabot alerts
and security updates."""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

from pydantic import StrictBool, model_validator

from app.policies.base import (
    DOCS_URL,
    Needs,
    Params,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
)
from app.sources.security import SOURCE

TYPE = "security_features"

# Param (= SecurityFeatures field) -> its name in Settings → Code security, and what to
# know when turning it on.
FEATURES: dict[str, tuple[str, str]] = {
    "secret_scanning": ("Secret scanning", ""),
    "secret_scanning_push_protection": (
        "Push protection", " (under Secret scanning; turn that on first)"),
    "dependabot_alerts": ("Dependabot alerts", ""),
    "dependabot_security_updates": (
        "Dependabot security updates", " (needs Dependabot alerts on)"),
}


class SecurityFeaturesParams(Params):
    """true: the feature must be on; false: not checked."""

    secret_scanning: StrictBool = True
    secret_scanning_push_protection: StrictBool = True
    dependabot_alerts: StrictBool = True
    dependabot_security_updates: StrictBool = True

    @model_validator(mode="after")
    def _something_checked(self) -> SecurityFeaturesParams:
        if not any(getattr(self, name) for name in FEATURES):
            raise ValueError("every feature is `false`, so nothing is checked; set at least "
                             "one of " + ", ".join(FEATURES) + " to true")
        return self


DEFAULT_PARAMS = SecurityFeaturesParams()


def _label(names: list[str]) -> str:
    return ", ".join(FEATURES[n][0] for n in names)


class SecurityFeatures(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "Security features are enabled"
    Params: ClassVar[builtins.type[Params]] = SecurityFeaturesParams
    example: ClassVar[dict[str, Any]] = {
        "secret_scanning": True,
        "secret_scanning_push_protection": True,
        "dependabot_alerts": True,
        "dependabot_security_updates": False,
    }
    needs: ClassVar[Needs] = Needs(sources=frozenset({SOURCE.name}))
    # No automatic fix: turning on scanning can cost Advanced Security seats.
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot,
                 params: SecurityFeaturesParams = DEFAULT_PARAMS) -> Result:
        view = SOURCE.of(snapshot)
        checked = [name for name in FEATURES if getattr(params, name)]
        states: dict[str, bool | None] = {name: getattr(view, name) for name in checked}
        missing = [n for n in checked if states[n] is False]
        unavailable = [n for n in checked if states[n] is None]
        enabled = [n for n in checked if states[n]]
        details: dict[str, Any] = {"enabled": enabled, "missing": missing,
                                   "unavailable": unavailable}
        # Never silently compliant: a feature GitHub does not offer here is named.
        note = (f"Not available for this repository, so not checked: {_label(unavailable)} "
                "(a private repository needs GitHub Advanced Security for secret scanning)."
                if unavailable else "")
        if not missing:
            return Result(True, " ".join(filter(None, [
                f"`{snapshot.full_name}` has {_label(enabled)} enabled." if enabled
                else f"`{snapshot.full_name}`: no required security feature is offered.",
                note])), details)
        steps = "\n".join(f"- **{FEATURES[n][0]}**{FEATURES[n][1]}" for n in missing)
        return Result(
            False,
            f"`{snapshot.full_name}` does not have these security features enabled: "
            f"{_label(missing)}.\n\n"
            f"Enable them under **Settings → Code security** (\"Code security and "
            f"analysis\" on older GitHub versions):\n{steps}\n\n"
            + (f"{note}\n\n" if note else "")
            + f"See {DOCS_URL}#{TYPE}.",
            details,
        )


POLICY = SecurityFeatures()
