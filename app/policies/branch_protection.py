"""Branches are protected as configured, by classic branch protection or active rulesets."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from app.policies.base import (
    DOCS_URL,
    Needs,
    Params,
    PolicyBase,
    Remedy,
    RepoSnapshot,
    Result,
    SourceUnreadable,
)
from app.policies.base import inline_code as code
from app.sources.branch_rules import SOURCE, BranchRules, Protection

TYPE = "branch_protection"
# Each branch costs two REST reads per repository and scan: keep the list short.
MAX_BRANCHES = 20
# Items listed in a message or in details.
MAX_LISTED = 20


def _names(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Stripped, unique, non-empty names (a blank one is a mistake, not a wildcard)."""
    if not values:
        raise ValueError(f"the list of {what} is empty; list at least one, or leave the key "
                         "out")
    out = tuple(dict.fromkeys(v.strip() for v in values))
    if "" in out:
        raise ValueError(f"a blank entry in the list of {what}")
    return out


class BranchProtectionParams(Params):
    """Each requirement is optional; unset means not checked."""

    # None: only the default branch.
    branches: tuple[str, ...] | None = None
    required_approving_review_count: Annotated[StrictInt, Field(ge=0, le=6)] | None = None
    dismiss_stale_reviews: StrictBool | None = None
    require_code_owner_reviews: StrictBool | None = None
    required_status_checks: tuple[str, ...] | None = None
    enforce_admins: StrictBool | None = None
    # False: force pushes / deletions must be blocked.
    allow_force_pushes: StrictBool | None = None
    allow_deletions: StrictBool | None = None
    required_signatures: StrictBool | None = None
    required_conversation_resolution: StrictBool | None = None

    @field_validator("branches")
    @classmethod
    def _branches(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        out = _names(value, "branches")
        if len(out) > MAX_BRANCHES:
            raise ValueError(f"at most {MAX_BRANCHES} branches, got {len(out)}")
        return out

    @field_validator("required_status_checks")
    @classmethod
    def _checks(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _names(value, "status checks")

    @model_validator(mode="after")
    def _something_checked(self) -> BranchProtectionParams:
        if not _wanted(self):
            raise ValueError(
                "no requirement is set: give at least one of required_approving_review_count, "
                "required_status_checks, " + ", ".join(f.param for f in FLAGS)
                + " (a `false` requirement, or `true` for allow_force_pushes / "
                "allow_deletions, checks nothing)")
        return self


@dataclass(frozen=True)
class Flag:
    """A yes/no requirement: the param, the Protection field that meets it, and where it is
    set in GitHub's UI."""

    param: str
    attr: str
    # The param value that asks for the protection (False for the allow_* ones).
    asks: bool
    label: str
    classic: str
    ruleset: str
    # How the state reads in "now: classic protection: off".
    on: str = "on"
    off: str = "off"


FLAGS: tuple[Flag, ...] = (
    Flag("dismiss_stale_reviews", "dismiss_stale_reviews", True,
         "stale approvals are dismissed when new commits are pushed",
         "Require a pull request before merging → Dismiss stale pull request approvals "
         "when new commits are pushed",
         "Require a pull request before merging → Dismiss stale pull request approvals "
         "when new commits are pushed"),
    Flag("require_code_owner_reviews", "require_code_owner_reviews", True,
         "a code owner must approve",
         "Require a pull request before merging → Require review from Code Owners",
         "Require a pull request before merging → Require review from Code Owners"),
    Flag("enforce_admins", "enforce_admins", True,
         "the rules apply to administrators too",
         "Do not allow bypassing the above settings",
         "any active ruleset (keep administrators off its bypass list)"),
    Flag("allow_force_pushes", "blocks_force_pushes", False,
         "force pushes are blocked",
         "Allow force pushes unchecked",
         "Block force pushes", "blocked", "allowed"),
    Flag("allow_deletions", "blocks_deletions", False,
         "the branch cannot be deleted",
         "Allow deletions unchecked",
         "Restrict deletions", "blocked", "allowed"),
    Flag("required_signatures", "required_signatures", True,
         "commits must be signed",
         "Require signed commits",
         "Require signed commits"),
    Flag("required_conversation_resolution", "required_conversation_resolution", True,
         "conversations must be resolved before merging",
         "Require conversation resolution before merging",
         "Require a pull request before merging → Require conversation resolution before "
         "merging"),
)


def _wanted(params: BranchProtectionParams) -> list[str]:
    """The params that check something."""
    out = [name for name in ("required_approving_review_count", "required_status_checks")
           if getattr(params, name) is not None]
    return out + [f.param for f in FLAGS if getattr(params, f.param) is f.asks]


def _state(rules: BranchRules, show: Callable[[Protection], str]) -> str:
    """What each mechanism sets now, e.g. "classic protection: off; rulesets: on"."""
    classic = ("classic protection unreadable" if rules.classic_unreadable
               else "no classic protection" if rules.classic is None
               else f"classic protection: {show(rules.classic)}")
    rulesets = ("no active ruleset" if rules.rulesets is None
                else f"rulesets: {show(rules.rulesets)}")
    return f"{classic}; {rulesets}"


def _approvals(count: int) -> str:
    return f"{count} approval{'' if count == 1 else 's'}"


def _on_off(flag: Flag) -> Callable[[Protection], str]:
    return lambda p: flag.on if getattr(p, flag.attr) else flag.off


def _parts(rules: BranchRules) -> list[Protection]:
    return [p for p in (rules.classic, rules.rulesets) if p is not None]


def unmet(rules: BranchRules, params: BranchProtectionParams) -> list[dict[str, str]]:
    """The requirements neither classic protection nor the rulesets meet, each with what
    is there now and where to set it."""
    out: list[dict[str, str]] = []
    parts = _parts(rules)
    count = params.required_approving_review_count
    if count is not None:
        have = [p.required_approving_review_count for p in parts
                if p.required_approving_review_count is not None]
        if not have or max(have) < count:
            out.append({
                "requirement": "required_approving_review_count",
                "wanted": (f"pull requests with at least {count} approving review"
                           + ("" if count == 1 else "s")) if count
                else "changes go through a pull request",
                "now": _state(rules, lambda p: "pull requests not required"
                              if p.required_approving_review_count is None
                              else _approvals(p.required_approving_review_count)),
                "classic": f"Require a pull request before merging → Required approvals: "
                           f"{count}",
                "ruleset": f"Require a pull request before merging → Required approvals: "
                           f"{count}",
            })
    checks = params.required_status_checks
    if checks is not None:
        required = {c for p in parts for c in p.required_status_checks or ()}
        missing = [c for c in checks if c not in required]
        if missing:
            out.append({
                "requirement": "required_status_checks",
                "wanted": "these status checks pass before merging: "
                          + ", ".join(code(c) for c in missing),
                "now": _state(rules, lambda p: ", ".join(
                    code(c) for c in sorted(p.required_status_checks or ())[:MAX_LISTED])
                    or "no checks required"),
                "classic": "Require status checks to pass before merging, and add them",
                "ruleset": "Require status checks to pass, and add them",
            })
    for flag in FLAGS:
        if getattr(params, flag.param) is not flag.asks:
            continue
        if not any(getattr(p, flag.attr) for p in parts):
            out.append({
                "requirement": flag.param, "wanted": flag.label,
                "now": _state(rules, _on_off(flag)),
                "classic": flag.classic, "ruleset": flag.ruleset,
            })
    # In the order the params are documented.
    order = list(BranchProtectionParams.model_fields)
    return sorted(out, key=lambda u: order.index(u["requirement"]))


def _branch_section(rules: BranchRules, problems: list[dict[str, str]]) -> str:
    applied = (", ".join(code(s) for s in rules.sources[:MAX_LISTED])
               if rules.sources else "none")
    lines = [f"**Branch {code(rules.branch)}** (active rulesets that apply: {applied})"]
    for p in problems:
        where = (f"set *{p['classic']}* in classic protection or a ruleset"
                 if p["classic"] == p["ruleset"]
                 else f"classic protection: *{p['classic']}*; ruleset: *{p['ruleset']}*")
        lines.append(f"- `{p['requirement']}`: wanted: {p['wanted']}; now: {p['now']}. "
                     f"Fix: {where}.")
    return "\n".join(lines)


class BranchProtection(PolicyBase):
    type: ClassVar[str] = TYPE
    title: ClassVar[str] = "Branches are protected"
    Params: ClassVar[builtins.type[Params]] = BranchProtectionParams
    example: ClassVar[dict[str, Any]] = {
        "branches": ["main", "release"],
        "required_approving_review_count": 1,
        "dismiss_stale_reviews": True,
        "required_status_checks": ["ci/test"],
        "allow_force_pushes": False,
        "allow_deletions": False,
    }
    # No automatic fix: which checks and reviewers a branch needs is a person's choice.
    remedy: ClassVar[Remedy | None] = None

    def needs_for(self, params: BranchProtectionParams) -> Needs:
        return Needs(sources=frozenset({SOURCE.name}),
                     branches=frozenset(params.branches or ()))

    def evaluate(self, snapshot: RepoSnapshot,
                 params: BranchProtectionParams | None = None) -> Result:
        if params is None:
            # Every requirement is opt-in: there is nothing to check by default.
            raise TypeError(f"{TYPE} needs its params")
        view = SOURCE.of(snapshot)
        names = params.branches or (view.default_branch,)
        failing: list[tuple[BranchRules, list[dict[str, str]]]] = []
        for name in names:
            rules = view.branches.get(name)
            if rules is None:
                raise KeyError(f"branch {name!r} was not fetched: declare it in the policy's "
                               "needs")
            problems = unmet(rules, params)
            if problems and rules.classic_unreadable:
                # The classic protection may well meet what the rulesets do not: unknown,
                # not a violation.
                raise SourceUnreadable(f"branch {name!r}: {rules.classic_unreadable}")
            if problems:
                failing.append((rules, problems))
        shown = ", ".join(code(n) for n in names)
        if not failing:
            return Result(True, f"Branch{'es' if len(names) > 1 else ''} {shown} of "
                                f"`{snapshot.full_name}` meet every protection requirement.")
        sections = "\n\n".join(_branch_section(r, p) for r, p in failing[:MAX_LISTED])
        return Result(
            False,
            f"`{snapshot.full_name}` does not protect "
            + ", ".join(code(r.branch) for r, _ in failing) + " as required.\n\n"
            f"{sections}\n\n"
            "Set the rules in the branch's classic protection rule under **Settings → "
            "Branches**, or in a ruleset that targets the branch under **Settings → Rules → "
            "Rulesets** (either one is enough).\n\n"
            f"See {DOCS_URL}#{TYPE}.",
            {"branches": [
                {"branch": r.branch, "unmet": [p["requirement"] for p in problems],
                 "rulesets": list(r.sources[:MAX_LISTED])}
                for r, problems in failing[:MAX_LISTED]]},
        )


POLICY = BranchProtection()
