"""Which repositories a policy applies to (targeting) and which are let off (exemptions).

Targeting keys live on a policy and in `defaults:`; a key the policy does not set comes from
`defaults:`, else the built-in default (every repository by name, any topic, visibility
and custom property; forks and archived repositories left out).

An exemption names repositories (globs), policies, a reason and, usually, an expiry date.
Until it expires, a failing policy shows as `exempt (reason, until D)` and takes no action;
from the day after, it stops applying by itself and the next scan acts on the violation.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from app.config.fields import Model, config_error, describe_value, max_len, non_blank

# The state of a violation an exemption lets off (the others: open, resolved).
EXEMPT = "exempt"

Visibility = Literal["public", "private", "internal"]
# GitHub's custom property names: letters, digits, `_`, `-`, `$`, `#`; at most 75.
_PROPERTY = re.compile(r"[A-Za-z0-9_$#-]{1,75}")
# A repository's own exemptions may reach this far ahead (its team does not own the config).
MAX_REPO_EXEMPTION_DAYS = 366
MAX_REASON = 1000


def _globs(value: tuple[str, ...] | None, what: str) -> tuple[str, ...] | None:
    for glob in value or ():
        non_blank(glob, what)
        if "/" in glob:
            raise config_error("repo_glob", f"{what} {glob!r} must be a repository name or a "
                                            "glob of names within the organization, without "
                                            "the owner")
    return value


class Targeting(Model):
    """The targeting keys (on a policy, and in `defaults:`). None: not set here."""

    # Repository-name globs (fnmatch, case-insensitive), without the owner.
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    # Any of these topics.
    topics: tuple[str, ...] | None = None
    visibility: tuple[Visibility, ...] | None = None
    # property name -> accepted values (any of); a multi-select property matches when any of
    # its values is accepted.
    custom_properties: dict[str, tuple[str, ...]] | None = None
    fork: bool | None = None
    archived: bool | None = None

    @field_validator("include", "exclude")
    @classmethod
    def _names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _globs(value, "a repository glob")

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for topic in value or ():
            non_blank(topic, "a topic")
        return None if value is None else tuple(t.lower() for t in value)

    @field_validator("custom_properties")
    @classmethod
    def _properties(cls, value: dict[str, tuple[str, ...]] | None
                    ) -> dict[str, tuple[str, ...]] | None:
        for name, accepted in (value or {}).items():
            if _PROPERTY.fullmatch(name) is None:
                raise config_error("property_name", f"{name!r} is not a custom property "
                                                    "name (letters, digits, _ - $ #)")
            if not accepted:
                raise config_error("empty_values", f"custom property {name!r} lists no "
                                                   "values; give the values that select")
        return value

    @field_validator("custom_properties", mode="before")
    @classmethod
    def _property_values(cls, value: Any) -> Any:
        # `tier: critical` is short for `tier: [critical]`.
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("archived")
    @classmethod
    def _archived(cls, value: bool | None) -> bool | None:
        if value:
            raise config_error("archived_unsupported",
                               "archived repositories are read-only on GitHub and are not "
                               "evaluated; `archived: true` is not supported")
        return value


_TARGET_KEYS = tuple(Targeting.model_fields)


@dataclass(frozen=True)
class Target:
    """A policy's targeting with `defaults:` applied."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    topics: tuple[str, ...] | None = None
    visibility: tuple[str, ...] | None = None
    custom_properties: Mapping[str, tuple[str, ...]] | None = None
    fork: bool = False

    @staticmethod
    def of(own: Targeting, defaults: Targeting) -> Target:
        def pick(name: str) -> Any:
            value = getattr(own, name)
            return value if value is not None else getattr(defaults, name)

        return Target(include=pick("include") or ("*",), exclude=pick("exclude") or (),
                      topics=pick("topics"), visibility=pick("visibility"),
                      custom_properties=pick("custom_properties"), fork=bool(pick("fork")))

    def miss(self, name: str, *, fork: bool, visibility: str, topics: Sequence[str] | None,
             properties: Mapping[str, Any] | None) -> str | None:
        """Why the repository `name` (without the owner) is out of scope; None when in.
        `topics` / `properties` None: not known (only asked when the target uses them)."""
        low = name.lower()
        if fork and not self.fork:
            return "forks are left out (set `fork: true` to include them)"
        if not any(fnmatch.fnmatchcase(low, g.lower()) for g in self.include):
            return f"not matched by `include` ({', '.join(self.include)})"
        hit = next((g for g in self.exclude if fnmatch.fnmatchcase(low, g.lower())), None)
        if hit is not None:
            return f"matched by `exclude` ({hit})"
        if self.visibility is not None and visibility not in self.visibility:
            return f"visibility {visibility} is not one of {', '.join(self.visibility)}"
        if self.topics is not None:
            have = {t.lower() for t in topics or ()}
            if not have & set(self.topics):
                return f"has none of the topics {', '.join(self.topics)}"
        for prop, accepted in (self.custom_properties or {}).items():
            value = (properties or {}).get(prop)
            values = value if isinstance(value, list) else [] if value is None else [value]
            if not {str(v) for v in values} & set(accepted):
                return (f"custom property {prop} is {describe_value(value)}, not one of "
                        f"{', '.join(accepted)}")
        return None


class Exemption(Model):
    """One entry of `exemptions:` in the org config."""

    repos: tuple[str, ...] = Field(min_length=1)
    # Policy names of the config; "*" for every policy.
    policies: tuple[str, ...] = Field(min_length=1)
    reason: str
    expires: dt.date | None = None
    approved_by: str | None = None

    @field_validator("repos")
    @classmethod
    def _repos(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _globs(value, "an exemption's repository glob") or ()

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return max_len(non_blank(value, "the exemption's reason"), MAX_REASON,
                       "the exemption's reason")

    @field_validator("expires", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            raise config_error("date", "expires is a date (YYYY-MM-DD), not a time")
        if not isinstance(value, dt.date | str | None):
            raise config_error("date", f"expires must be a date (YYYY-MM-DD), got "
                                       f"{describe_value(value)}")
        return value

    @field_validator("approved_by")
    @classmethod
    def _login(cls, value: str | None) -> str | None:
        return None if value is None else non_blank(value.removeprefix("@"), "approved_by")

    def covers(self, repo_name: str, policy: str) -> bool:
        low = repo_name.lower()
        return (("*" in self.policies or policy in self.policies)
                and any(fnmatch.fnmatchcase(low, g.lower()) for g in self.repos))

    def active_on(self, day: dt.date) -> bool:
        """In force on `day` (UTC): the expiry day itself is the last day."""
        return self.expires is None or day <= self.expires

    def describe(self) -> str:
        until = f", until {self.expires.isoformat()}" if self.expires else ", no expiry"
        who = f", approved by @{self.approved_by}" if self.approved_by else ""
        return f"exempt ({self.reason}{until}{who})"

    def as_json(self, source: str) -> dict[str, Any]:
        return {"reason": self.reason, "expires": self.expires.isoformat() if self.expires
                else None, "approved_by": self.approved_by, "source": source}


def check_policy_names(exemptions: Sequence[Exemption], names: set[str]) -> None:
    for index, exemption in enumerate(exemptions):
        unknown = [p for p in exemption.policies if p != "*" and p not in names]
        if unknown:
            raise config_error("unknown_policy",
                               f"exemptions[{index}] names policies that are not in the "
                               f"config: {', '.join(map(repr, unknown))}")


TARGET_KEYS = _TARGET_KEYS
