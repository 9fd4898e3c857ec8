"""Typed, frozen models of the organization's `config.yaml`.

The models validate themselves (so code that builds them directly gets the same rules as a
parsed file); `app.config.loader` maps their errors back to YAML lines.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.config.channels import NotifyChannel
from app.config.fields import Model, describe_value, max_len, non_blank
from app.config.fields import config_error as _error
from app.config.scope import Exemption, Target, Targeting, check_policy_names
from app.issue_text import TemplateProblem, check_template
from app.policies import REGISTRY, Needs, Params, Policy, RepoSnapshot, Result

__all__ = [
    "ACTION_NAMES",
    "ENFORCED_ACTIONS",
    "AccessControl",
    "ActionSettings",
    "BlockPrsDetails",
    "Defaults",
    "Exemption",
    "FixDetails",
    "IssueDetails",
    "NotifyChannel",
    "OrgConfig",
    "PolicyConfig",
    "PrCommentDetails",
    "Target",
    "describe_value",
    "normalize_action",
]

# Every action a policy may name, in the dashed spelling the parsed config always uses.
ACTION_NAMES: tuple[str, ...] = (
    "archive-repo",
    "block-prs",
    "comment-on-prs",
    "create-issue",
    "fix",
    "log-only",
)
# Actions this release performs; the others parse, and OrgConfig.not_enforced_notes() says so.
ENFORCED_ACTIONS: frozenset[str] = frozenset({"create-issue", "archive-repo", "log-only",
                                              "block-prs", "comment-on-prs", "fix"})

# The violations table keys on the policy name in a VARCHAR(255).
MAX_POLICY_NAME = 255
# GitHub's own limits; longer values would only fail later, when the action runs.
MAX_ISSUE_TITLE = 256
MAX_ISSUE_BODY = 65536
MAX_LABEL = 50

_ORG = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_TEAM_SLUG = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_TEAM_RE = re.compile(rf"(?P<org>{_ORG})/(?P<team>{_TEAM_SLUG})")
# A repository name within the organization (GitHub allows letters, digits, - _ .).
_REPO_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday",
                             "saturday", "sunday")
DEFAULT_ARCHIVE_AFTER_DAYS = 14


def normalize_action(value: object) -> str:
    """`create_issue` → `create-issue`; anything not in ACTION_NAMES is an error."""
    if not isinstance(value, str):
        raise _error("action_type", f"expected an action name, got {describe_value(value)}")
    name = value.replace("_", "-")
    if name not in ACTION_NAMES:
        raise _error(
            "unknown_action",
            f"unknown action {value!r} (expected one of: {', '.join(ACTION_NAMES)})",
        )
    return name


ActionName = Annotated[str, BeforeValidator(normalize_action)]


class AccessControl(Model):
    """Who may use the dashboard: members of one GitHub team."""

    authorized_team: str

    @field_validator("authorized_team")
    @classmethod
    def _team(cls, value: str) -> str:
        if _TEAM_RE.fullmatch(value) is None:
            raise _error(
                "team_format",
                f"must be 'org/team-slug' (for example 'my-org/platform-team'), got {value!r}",
            )
        return value

    @property
    def org(self) -> str:
        return self.authorized_team.split("/", 1)[0]

    @property
    def team_slug(self) -> str:
        return self.authorized_team.split("/", 1)[1]


def _template(value: str, what: str) -> str:
    """Issue titles and bodies are templates (app/issue_text.py): `{repo}` and friends."""
    try:
        check_template(value)
    except TemplateProblem as exc:
        raise _error("template", f"{what}: {exc}") from None
    return value


class IssueDetails(Model):
    """The issue `create-issue` files. None means: use the policy's title / the violation."""

    # None: the issue is titled with the policy's own title (REGISTRY[type].title).
    title: str | None = None
    # None: the issue body is the violation message the policy produced.
    body: str | None = None
    labels: tuple[str, ...] = ()

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = max_len(non_blank(value, "the issue title"), MAX_ISSUE_TITLE,
                         "the issue title")
        return _template(value, "the issue title")

    @field_validator("body")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise _error("blank", "the issue body must not be empty")
        return _template(max_len(value, MAX_ISSUE_BODY, "the issue body"), "the issue body")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for label in value:
            max_len(non_blank(label, "a label"), MAX_LABEL, f"label {label!r}")
        seen: set[str] = set()
        for label in value:
            # GitHub label names are case-insensitive.
            if label.lower() in seen:
                raise _error("duplicate_label", f"label {label!r} is listed more than once")
            seen.add(label.lower())
        return value


class PrCommentDetails(Model):
    """For `comment-on-prs`: the text that heads the sticky comment while it fails."""

    message: str

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        if not value.strip():
            raise _error("blank", "the comment message must not be empty")
        return max_len(value, MAX_ISSUE_BODY, "the comment message")


class BlockPrsDetails(Model):
    """For `block-prs`: the policy reports in a check run of this name of its own."""

    status_check_name: str

    @field_validator("status_check_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return non_blank(value, "the status check name")


def _repo_name(value: str, what: str) -> str:
    if _REPO_NAME_RE.fullmatch(value) is None or value in (".", ".."):
        raise _error("repo_name", f"{what} must be a repository name of the organization "
                                  f"(letters, digits, '-', '_', '.'), got {value!r}")
    return value


def _weekday(value: object) -> str:
    if isinstance(value, str) and value.strip().lower() in WEEKDAYS:
        return value.strip().lower()
    raise _error("weekday", f"expected a day of the week ({', '.join(WEEKDAYS)}), "
                            f"got {describe_value(value)}")


Weekday = Annotated[str, BeforeValidator(_weekday)]


class ActionSettings(Model):
    """How the actions of a policy behave; under `defaults:` or on the policy itself.

    None means: not set here (a policy inherits `defaults:`, which has the built-in default).
    """

    # Post a reminder on an open issue after this many days without activity (off: None).
    remind_after_days: int | None = Field(default=None, ge=1, le=365)
    # Days of the week (UTC) on which no reminder is posted.
    quiet_days: tuple[Weekday, ...] | None = None
    # archive-repo archives only a violation still open this many days after it was found.
    archive_after_days: int | None = Field(default=None, ge=0, le=3650)

    @field_validator("quiet_days")
    @classmethod
    def _quiet(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(set(value)) == len(WEEKDAYS):
            raise _error("all_quiet", "every day is a quiet day, so no reminder could ever "
                                      "be posted; remove remind_after_days instead")
        return value


class Defaults(ActionSettings, Targeting):
    """`defaults:` at the top of the config: settings and targeting every policy inherits."""


class FixDetails(Model):
    """For `fix` on a missing-file policy: where the new file's content comes from."""

    # A path in the organization's `.github` repository (default: templates/<file name>).
    template: str | None = None

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        non_blank(value, "the template path")
        if value.startswith("/") or ".." in value.split("/"):
            raise _error("template_path", f"the template path must be relative to the "
                                          f"`.github` repository's root, got {value!r}")
        return value


@dataclass(frozen=True)
class Effective:
    """A policy's action settings with `defaults:` and the top level applied."""

    remind_after_days: int | None
    quiet_days: frozenset[str]
    archive_after_days: int
    dry_run: bool
    # The repository (name within the org) issues are filed in; None: the repository itself.
    issue_repo: str | None


class PolicyConfig(ActionSettings, Targeting):
    """One entry of `policies`: which check runs, where, and what happens on a violation."""

    name: str
    type: str
    # YAML key `action`: one action or a list; always a non-empty tuple of dashed names here.
    actions: tuple[ActionName, ...] = Field(alias="action")
    issue_details: IssueDetails | None = None
    pr_comment_details: PrCommentDetails | None = None
    block_prs_details: BlockPrsDetails | None = None
    # An issue a person closes while the violation is still open stays closed (until the
    # violation resolves and fails again) instead of being reopened at the next scan.
    respect_manual_close: bool = False
    # Log what would be archived or fixed, and write nothing (see also `enforcement`).
    dry_run: bool = False
    # File this policy's issues in this repository of the organization instead.
    issue_repo: str | None = None
    fix_details: FixDetails | None = None
    # The type's parameters (its own model: `params_model`); validated by type.
    # SerializeAsAny: dumped (policy_key, fingerprints) with the type's own fields.
    params: SerializeAsAny[Params] = Field(default=None, validate_default=True)

    @field_validator("issue_repo")
    @classmethod
    def _issue_repo(cls, value: str | None) -> str | None:
        return None if value is None else _repo_name(value, "issue_repo")

    @field_validator("params", mode="plain")
    @classmethod
    def _params(cls, value: Any, info: ValidationInfo) -> Params | None:
        policy = REGISTRY.get(str(info.data.get("type")))
        if policy is None:
            return None  # the type is reported as unknown
        if isinstance(value, policy.Params):
            return value
        model: type[Params] = policy.Params
        if value is not None and not isinstance(value, dict):
            raise _error("params_type", f"expected a mapping of the parameters of "
                                        f"{policy.type!r}, got {describe_value(value)}")
        # Errors come back located under `params`, one per key (a misspelt one included).
        return model.model_validate(value or {})

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return max_len(non_blank(value, "the policy name"), MAX_POLICY_NAME, "the policy name")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in REGISTRY:
            raise _error(
                "unknown_policy_type",
                f"unknown policy type {value!r} (expected one of: {', '.join(REGISTRY)})",
            )
        return value

    @field_validator("actions", mode="before")
    @classmethod
    def _actions_shape(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list | tuple):
            if not value:
                raise _error(
                    "empty_actions",
                    "the action list is empty; give at least one of: " + ", ".join(ACTION_NAMES),
                )
            return value
        raise _error(
            "actions_type",
            f"expected an action or a list of actions, got {describe_value(value)}",
        )

    @field_validator("actions")
    @classmethod
    def _actions_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for action in value:
            if action in seen:
                raise _error("duplicate_action", f"action {action!r} is listed more than once")
            seen.add(action)
        return value

    @property
    def policy(self) -> Policy:
        """The registered policy implementation for `type`."""
        return REGISTRY[self.type]

    @property
    def needs(self) -> Needs:
        """What this policy reads, with its parameters."""
        return self.policy.needs_for(self.params)

    def evaluate(self, snapshot: RepoSnapshot) -> Result:
        """The policy's result (unknown when GitHub would not give a source's data)."""
        return self.policy.judge(snapshot, self.params)

    def not_enforced_actions(self) -> tuple[str, ...]:
        return tuple(a for a in self.actions if a not in ENFORCED_ACTIONS)


class OrgConfig(Model):
    """The whole `config.yaml`."""

    # None when the file has no `access_control` section.
    access_control: AccessControl | None = None
    policies: tuple[PolicyConfig, ...]
    # Serve /badge/{org}/{repo}.svg for public repositories (off: badges answer 404).
    public_badges: bool = False
    # dry-run: every policy behaves as with `dry_run: true` (log, write nothing).
    enforcement: Literal["enforce", "dry-run"] = "enforce"
    # File every policy's issues in this repository of the organization.
    issue_repo: str | None = None
    # Repository-name globs that archive-repo never archives (nor `.github` and issue_repo).
    protected_repos: tuple[str, ...] = ()
    defaults: Defaults = Defaults()
    # Slack / signed-webhook channels told when violations open or resolve (app/notify).
    notify: tuple[NotifyChannel, ...] = ()
    # Repositories let off policies for a reason, usually until a date (app/config/scope.py).
    exemptions: tuple[Exemption, ...] = ()
    # Repositories may exempt themselves in `.github/policy-exemptions.yaml` (with a reason
    # and an expiry at most a year ahead).
    allow_repo_exemptions: bool = False

    @field_validator("exemptions")
    @classmethod
    def _exemption_refs(cls, value: tuple[Exemption, ...], info: ValidationInfo
                        ) -> tuple[Exemption, ...]:
        policies = info.data.get("policies")
        if policies is not None:
            check_policy_names(value, {p.name for p in policies})
        return value

    def target(self, policy: PolicyConfig) -> Target:
        """The policy's targeting with `defaults:` applied."""
        return Target.of(policy, self.defaults)

    def scans_forks(self) -> bool:
        return any(self.target(p).fork for p in self.policies)

    @field_validator("issue_repo")
    @classmethod
    def _issue_repo(cls, value: str | None) -> str | None:
        return None if value is None else _repo_name(value, "issue_repo")

    @model_validator(mode="after")
    def _notify_refs(self) -> OrgConfig:
        names = {p.name for p in self.policies}
        seen: set[str] = set()
        for channel in self.notify:
            if channel.name.lower() in seen:
                raise _error("duplicate_channel",
                             f"duplicate notify channel name {channel.name!r}")
            seen.add(channel.name.lower())
            unknown = [p for p in channel.policies or () if p not in names]
            if unknown:
                raise _error("unknown_policy",
                             f"notify channel {channel.name!r} names policies that are not "
                             f"in the config: {', '.join(map(repr, unknown))}")
        return self

    def notify_channel(self, name: str) -> NotifyChannel | None:
        return next((c for c in self.notify if c.name == name), None)

    @field_validator("protected_repos")
    @classmethod
    def _globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for glob in value:
            non_blank(glob, "a protected_repos glob")
        return value

    def effective(self, policy: PolicyConfig) -> Effective:
        d = self.defaults

        def pick(name: str) -> Any:
            own = getattr(policy, name)
            return own if own is not None else getattr(d, name)

        archive = pick("archive_after_days")
        return Effective(
            remind_after_days=pick("remind_after_days"),
            quiet_days=frozenset(pick("quiet_days") or ()),
            archive_after_days=DEFAULT_ARCHIVE_AFTER_DAYS if archive is None else archive,
            dry_run=policy.dry_run or self.enforcement == "dry-run",
            issue_repo=policy.issue_repo or self.issue_repo,
        )

    def is_protected(self, repo_name: str) -> bool:
        """Never archived: `.github`, an issue repository, or a `protected_repos` match."""
        name = repo_name.rsplit("/", 1)[-1].lower()
        if name == ".github":
            return True
        issue_repos = {self.issue_repo, *(p.issue_repo for p in self.policies)}
        if name in {r.lower() for r in issue_repos if r}:
            return True
        return any(fnmatch.fnmatchcase(name, glob.lower()) for glob in self.protected_repos)

    @model_validator(mode="after")
    def _unique_names(self) -> OrgConfig:
        seen: set[str] = set()
        for policy in self.policies:
            if policy.name in seen:
                raise _error(
                    "duplicate_policy_name",
                    f"duplicate policy name {policy.name!r}: names identify violations, "
                    "so each policy needs its own",
                )
            seen.add(policy.name)
        return self

    def not_enforced_notes(self) -> list[str]:
        """One line per (policy, action) this release parses but does not perform."""
        return [
            f"policy {policy.name!r}: action {action!r} is not enforced yet"
            for policy in self.policies
            for action in policy.not_enforced_actions()
        ]
