"""In-memory model of the GitHub the fake serves, plus the knobs tests turn.

Tests arrange data with the helper methods (add_installation, add_repo, set_file, ...) and
inspect what the app did through the same objects (issues, comments, reactions, request log,
counters). Everything lives in one FakeState so a test sees exactly what the server sees.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import math
import random
import secrets
import string
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REACTION_CONTENTS = frozenset(
    {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
)
# GitHub's repository roles, strongest first; "none" means no access.
PERMISSION_LEVELS = ("admin", "maintain", "write", "triage", "read", "none")
# The legacy name of each role (a team's `permission`, the `permission` filter).
LEGACY_PERMISSIONS = {"admin": "admin", "maintain": "maintain", "write": "push",
                      "triage": "triage", "read": "pull"}
# Repository settings REST (GET/PATCH /repos/{owner}/{repo}) and GraphQL show.
REPO_SETTINGS = ("has_wiki", "has_projects", "delete_branch_on_merge", "allow_merge_commit",
                 "allow_squash_merge", "allow_rebase_merge")
RULESET_ENFORCEMENTS = ("active", "evaluate", "disabled")
# Rule types of branch rulesets (the REST description's repository-rule), with the
# parameters GitHub requires (None: the rule has no parameters).
RULE_PARAMETERS: dict[str, tuple[str, ...] | None] = {
    "creation": None, "deletion": None, "required_linear_history": None,
    "required_signatures": None, "non_fast_forward": None,
    "update": ("update_allows_fetch_and_merge",),
    "merge_queue": ("check_response_timeout_minutes", "grouping_strategy",
                    "max_entries_to_build", "max_entries_to_merge", "merge_method",
                    "min_entries_to_merge", "min_entries_to_merge_wait_minutes"),
    "required_deployments": ("required_deployment_environments",),
    "pull_request": ("dismiss_stale_reviews_on_push", "require_code_owner_review",
                     "require_last_push_approval", "required_approving_review_count",
                     "required_review_thread_resolution"),
    "required_status_checks": ("required_status_checks", "strict_required_status_checks_policy"),
    "commit_message_pattern": ("operator", "pattern"),
    "commit_author_email_pattern": ("operator", "pattern"),
    "committer_email_pattern": ("operator", "pattern"),
    "branch_name_pattern": ("operator", "pattern"),
    "workflows": ("workflows",),
    "code_scanning": ("code_scanning_tools",),
    "file_path_restriction": ("restricted_file_paths",),
    "max_file_path_length": ("max_file_path_length",),
    "file_extension_restriction": ("restricted_file_extensions",),
    "max_file_size": ("max_file_size",),
}
# What GitHub's UI fills in when a rule is added without touching its settings.
RULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "update": {"update_allows_fetch_and_merge": False},
    "pull_request": {"dismiss_stale_reviews_on_push": False, "require_code_owner_review": False,
                     "require_last_push_approval": False, "required_approving_review_count": 0,
                     "required_review_thread_resolution": False,
                     "allowed_merge_methods": ["merge", "squash", "rebase"]},
    "required_status_checks": {"required_status_checks": [],
                               "strict_required_status_checks_policy": False},
}
DEFAULT_INSTALLATION_PERMISSIONS: dict[str, str] = {
    "actions": "read",
    "administration": "read",
    "contents": "read",
    "issues": "write",
    "metadata": "read",
    "organization_administration": "read",
}
DEFAULT_INSTALLATION_EVENTS = ["issue_comment", "issues", "push", "repository"]
# Organization roles (GET /orgs/{org}/memberships/{username} `role`): "admin" is an owner.
ORG_ROLES = ("admin", "member")
TEAM_ROLES = ("member", "maintainer")
MEMBERSHIP_STATES = ("active", "pending")
# GitHub's lifetimes for the web flow's credentials.
USER_TOKEN_TTL = 28800  # ghu_ user access tokens: 8 hours
REFRESH_TOKEN_TTL = 15897600  # ghr_ refresh tokens: 6 months
OAUTH_CODE_TTL = 600  # the authorize step's code: 10 minutes
MANIFEST_CODE_TTL = 3600  # the manifest flow's code: 1 hour
_ALNUM = string.ascii_letters + string.digits
# Label colour GitHub gives labels created implicitly (e.g. by creating an issue with them).
DEFAULT_LABEL_COLOR = "ededed"


def iso(ts: float) -> str:
    """GitHub's timestamp format: second precision, UTC, trailing Z."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, ident: int) -> str:
    """A legacy-format global node id ("04:User1" base64), stable for a given object."""
    return base64.b64encode(f"{len(kind):02d}:{kind}{ident}".encode()).decode()


def git_blob_sha(data: bytes) -> str:
    """The sha git (and the contents API) reports for a file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a git tree: `path` is from the repository's root."""

    name: str
    path: str
    type: str  # "blob" | "tree"
    mode: str  # "100644" | "040000", as the REST API spells them
    sha: str
    size: int | None  # blobs only


@dataclass(frozen=True)
class GitTree:
    path: str  # "" for the root
    sha: str
    entries: tuple[TreeEntry, ...]


def git_trees(files: Mapping[str, str]) -> Mapping[str, GitTree]:
    """Every tree of a commit holding `files`, by directory ("" is the root), with git's own
    object ids: GraphQL's Commit.tree.oid and REST's git/trees agree, as on GitHub. Every
    file is a regular file (mode 100644). Do not mutate the answer (it is cached)."""
    return _git_trees(tuple(sorted(files.items())))


@lru_cache(maxsize=2048)
def _git_trees(items: tuple[tuple[str, str], ...]) -> Mapping[str, GitTree]:
    # directory -> child name -> file text (None: a subdirectory)
    children: dict[str, dict[str, str | None]] = {"": {}}
    for path, text in items:
        parts = path.split("/")
        for depth in range(len(parts)):
            parent = "/".join(parts[:depth])
            children.setdefault(parent, {})[parts[depth]] = (
                text if depth == len(parts) - 1 else None)
    trees: dict[str, GitTree] = {}
    for directory in sorted(children, key=lambda d: -d.count("/") - (d != "")):
        entries: list[TreeEntry] = []
        body = b""
        # git orders a tree's entries by name, a subtree's name as if it ended with "/".
        for name, blob in sorted(children[directory].items(),
                                 key=lambda kv: kv[0] + ("/" if kv[1] is None else "")):
            child = f"{directory}/{name}" if directory else name
            if blob is None:
                sha = trees[child].sha
                entry = TreeEntry(name, child, "tree", "040000", sha, None)
                body += b"40000 " + name.encode() + b"\0" + bytes.fromhex(sha)
            else:
                data = blob.encode()
                sha = git_blob_sha(data)
                entry = TreeEntry(name, child, "blob", "100644", sha, len(data))
                body += b"100644 " + name.encode() + b"\0" + bytes.fromhex(sha)
            entries.append(entry)
        sha = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
        trees[directory] = GitTree(directory, sha, tuple(entries))
    return trees


@cache
def _default_private_key() -> rsa.RSAPrivateKey:
    # Key generation costs ~50-100 ms; one key per test process keeps the suite fast.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(eq=False)
class User:
    login: str
    id: int
    type: str = "User"  # "User" | "Organization" | "Bot"
    site_admin: bool = False
    # Organizations only: the default GITHUB_TOKEN permissions for every repository. Older
    # organizations default to "write"; "read" there makes every repository "read".
    default_workflow_permissions: str = "write"
    can_approve_pull_request_reviews: bool = False
    # Organizations only: the base role every member has on every repository ("none" too).
    default_repository_permission: str = "read"
    # Profile fields GET /user shows (the private user's view).
    name: str | None = None
    email: str | None = None
    created_at: float = 0.0


@dataclass(eq=False)
class OrgMembership:
    """A user's membership of an organization (GitHub: "admin" = owner, or "member")."""

    org: User
    user: User
    role: str = "member"
    state: str = "active"  # "pending": invited, not yet accepted


@dataclass(eq=False)
class Team:
    id: int
    org: User
    slug: str
    name: str
    # lower-cased login -> "member" | "maintainer"
    members: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class UserToken:
    """A user access token (ghu_) the App got for a user through the web flow."""

    token: str
    user: User
    client_id: str
    expires_at: float
    refresh_token: str
    refresh_expires_at: float
    revoked: bool = False
    refresh_used: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at

    def refreshable(self, now: float) -> bool:
        return not self.refresh_used and now < self.refresh_expires_at


@dataclass(eq=False)
class OAuthCode:
    """The authorize step's code: single use, bound to the client and the redirect_uri."""

    code: str
    client_id: str
    redirect_uri: str
    user: User
    state: str | None
    expires_at: float
    used: bool = False


@dataclass(eq=False)
class ManifestDraft:
    """A manifest POSTed to .../settings/apps/new, waiting for the user to confirm it."""

    id: str
    manifest: dict[str, Any]
    org: User | None  # None: the signed-in user's own account
    state: str | None
    expires_at: float


@dataclass(eq=False)
class ManifestConversion:
    """A confirmed manifest; POST /app-manifests/{code}/conversions exchanges its code once."""

    code: str
    manifest: dict[str, Any]
    owner: User
    name: str
    expires_at: float
    used: bool = False
    webhook_secret: str = ""


@dataclass(eq=False)
class Label:
    id: int
    name: str
    color: str = DEFAULT_LABEL_COLOR
    description: str | None = None
    default: bool = False


@dataclass(eq=False)
class Reaction:
    id: int
    user: User
    content: str
    created_at: float


@dataclass(eq=False)
class Comment:
    id: int
    repo: Repo
    issue_number: int
    user: User
    body: str
    created_at: float
    updated_at: float
    reactions: list[Reaction] = field(default_factory=list)
    via_app: bool = False


@dataclass(eq=False)
class Issue:
    id: int
    repo: Repo
    number: int
    title: str
    body: str | None
    user: User
    state: str = "open"
    state_reason: str | None = None
    # Names as stored on the repository's labels (canonical case).
    labels: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    closed_at: float | None = None
    closed_by: User | None = None
    locked: bool = False
    via_app: bool = False
    # A pull request (they share the issues' numbers; tests/fakegithub/pulls.py has the rest).
    pull_request: bool = False


@dataclass(eq=False)
class BranchProtection:
    """A classic branch protection rule for the branches matching `pattern` (fnmatch, `*`
    stops at `/`), in REST's names. Copy it (dataclasses.replace) before an edit to build
    the `branch_protection_rule` "edited" webhook from the difference."""

    id: int
    pattern: str
    # Status check contexts required (None: status checks not required).
    required_status_checks: list[str] | None = None
    strict: bool = False
    enforce_admins: bool = False
    # Approvals required (None: pull request reviews not required).
    required_approving_review_count: int | None = None
    dismiss_stale_reviews: bool = False
    require_code_owner_reviews: bool = False
    require_last_push_approval: bool = False
    required_signatures: bool = False
    required_linear_history: bool = False
    allow_force_pushes: bool = False
    allow_deletions: bool = False
    required_conversation_resolution: bool = False
    block_creations: bool = False
    lock_branch: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(eq=False)
class Ruleset:
    """A branch ruleset of a repository (`repo`) or of an organization (`org`, applying to
    the repositories its `repository_name` / `repository_id` condition selects)."""

    id: int
    name: str
    repo: Repo | None = field(default=None, repr=False)
    org: User | None = field(default=None, repr=False)
    enforcement: str = "active"  # RULESET_ENFORCEMENTS
    target: str = "branch"
    # GitHub's shape: {"ref_name": {"include": [...], "exclude": [...]}, "repository_name":
    # {"include": [...], "exclude": [...], "protected": False}} (the last for organizations).
    conditions: dict[str, Any] = field(default_factory=dict)
    # [{"type": ..., "parameters": {...}}]; "parameters" only for the types that have them.
    rules: list[dict[str, Any]] = field(default_factory=list)
    bypass_actors: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def source_type(self) -> str:
        return "Repository" if self.repo is not None else "Organization"

    @property
    def source(self) -> str:
        if self.repo is not None:
            return self.repo.full_name
        assert self.org is not None
        return self.org.login


@dataclass
class SecuritySettings:
    """A repository's security features. `advanced_security` (GitHub Advanced Security)
    matters for private and internal repositories only: without it they have no secret
    scanning, and GitHub shows no `secret_scanning*` entries for them."""

    advanced_security: bool = False
    secret_scanning: bool = False
    secret_scanning_push_protection: bool = False
    dependabot_alerts: bool = False
    dependabot_security_updates: bool = False


def ruleset_rule(type: str, **parameters: Any) -> dict[str, Any]:  # `type` as in GitHub's JSON
    """A ruleset rule as GitHub stores it: {"type"}, or {"type", "parameters"} with what
    GitHub fills in (RULE_DEFAULTS) under `parameters`; the required parameters are checked.
    required_status_checks may be given as context names:
    ruleset_rule("required_status_checks", required_status_checks=["ci"])."""
    if type not in RULE_PARAMETERS:
        raise ValueError(f"unknown rule type {type!r}")
    required = RULE_PARAMETERS[type]
    if required is None:
        if parameters:
            raise ValueError(f"{type} rules have no parameters")
        return {"type": type}
    params = {**copy.deepcopy(RULE_DEFAULTS.get(type, {})), **parameters}
    missing = [p for p in required if p not in params]
    if missing:
        raise ValueError(f"{type} rules need {missing}")
    if type == "required_status_checks":
        params["required_status_checks"] = [
            {"context": c} if isinstance(c, str) else dict(c)
            for c in params["required_status_checks"]]
    if type == "pull_request" and not 0 <= int(params["required_approving_review_count"]) <= 10:
        raise ValueError("required_approving_review_count must be 0-10")
    return {"type": type, "parameters": params}


@dataclass(eq=False)
class Repo:
    id: int
    owner: User
    name: str
    visibility: str = "public"  # "public" | "private" | "internal"
    archived: bool = False
    fork: bool = False
    disabled: bool = False
    is_template: bool = False
    has_issues: bool = True
    default_branch: str = "main"
    description: str | None = None
    topics: list[str] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    pushed_at: float = 0.0
    # branch -> {path: text}; the default branch's dict is `files`.
    branches: dict[str, dict[str, str]] = field(default_factory=dict)
    # branch -> head commit sha; changes whenever a file on that branch changes.
    heads: dict[str, str] = field(default_factory=dict)
    # commit sha -> the files at that commit (every head there ever was, and pull request
    # heads from forks, which GitHub keeps in the base repository as refs/pull/N/head).
    commits: dict[str, dict[str, str]] = field(default_factory=dict)
    # "read" / "write"; None means GitHub Actions is disabled for the repository.
    workflow_permissions: str | None = "read"
    can_approve_pull_request_reviews: bool = False
    # lower-cased login -> one of PERMISSION_LEVELS
    collaborators: dict[str, str] = field(default_factory=dict)
    # lower-cased name -> Label
    labels: dict[str, Label] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    next_issue_number: int = 1
    # REPO_SETTINGS, with GitHub's defaults for a new repository.
    has_wiki: bool = True
    has_projects: bool = True
    delete_branch_on_merge: bool = False
    allow_merge_commit: bool = True
    allow_squash_merge: bool = True
    allow_rebase_merge: bool = True
    # Classic branch protection rules, oldest first (GitHub's precedence among patterns).
    protections: list[BranchProtection] = field(default_factory=list)
    rulesets: list[Ruleset] = field(default_factory=list)
    # Teams of the owner organization with access: lower-cased slug -> role.
    team_access: dict[str, str] = field(default_factory=dict)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    # Custom property values (organization repositories): name -> a string, a list of
    # strings (multi-select), or None.
    custom_properties: dict[str, str | list[str] | None] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"

    def settings(self) -> dict[str, bool]:
        """REPO_SETTINGS as REST names them."""
        return {key: bool(getattr(self, key)) for key in REPO_SETTINGS}

    @property
    def private(self) -> bool:
        return self.visibility != "public"

    @property
    def files(self) -> dict[str, str]:
        return self.branches.setdefault(self.default_branch, {})

    def open_issues_count(self) -> int:
        return sum(1 for i in self.issues.values() if i.state == "open")

    def commit(self, ref: str) -> tuple[str, dict[str, str]] | None:
        """(sha, files) of the commit `ref` names: a full sha, or a prefix of 7 or more."""
        if ref in self.commits:
            return ref, self.commits[ref]
        if len(ref) >= 7:
            for sha, files in self.commits.items():
                if sha.startswith(ref):
                    return sha, files
        return None


@dataclass(eq=False)
class Installation:
    id: int
    account: User
    repository_selection: str = "all"  # "all" | "selected"
    repos: list[Repo] = field(default_factory=list)
    permissions: dict[str, str] = field(
        default_factory=lambda: dict(DEFAULT_INSTALLATION_PERMISSIONS)
    )
    events: list[str] = field(default_factory=lambda: list(DEFAULT_INSTALLATION_EVENTS))
    created_at: float = 0.0
    updated_at: float = 0.0
    suspended_at: float | None = None
    suspended_by: User | None = None

    @property
    def target_type(self) -> str:
        return self.account.type


@dataclass(eq=False)
class Token:
    token: str
    installation_id: int
    expires_at: float
    # None: every repository of the installation; else only these repository ids.
    repo_ids: frozenset[int] | None = None
    permissions: dict[str, str] = field(default_factory=dict)
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class RateLimitConfig:
    """Primary (hourly) budget, per installation token and separately for the app's JWT."""

    limit: int = 5000
    graphql_limit: int = 5000
    # GitHub's window is an hour; shorten it so a test can watch the budget come back.
    reset_after_seconds: float = 3600.0
    status: int = 403  # GitHub answers 403 (sometimes 429) once the budget is spent
    # Unauthenticated API requests (GitHub: 60 an hour per IP address).
    anonymous_limit: int = 60
    # Per-installation overrides of `limit` (core), by installation id.
    installation_limits: dict[int, int] = field(default_factory=dict)


@dataclass
class SecondaryLimitConfig:
    """GitHub's abuse limits; off by default so ordinary tests never trip them."""

    enabled: bool = False
    max_concurrent: int = 100
    # GET/HEAD/OPTIONS 1 point, POST/PATCH/PUT/DELETE 5; GraphQL: queries 1, mutations 5
    points_per_minute: int = 900
    content_per_minute: int = 80  # content-creating requests (POST of issues, comments, ...)
    content_per_hour: int = 500
    retry_after: int = 60  # seconds sent in `retry-after`; requests are refused until then
    status: int = 403  # or 429
    # Window lengths, shrinkable for tests.
    minute_seconds: float = 60.0
    hour_seconds: float = 3600.0


@dataclass
class RateBucket:
    limit: int
    used: int
    reset_at: float

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass
class FailRule:
    remaining: int
    status: int
    path_prefix: str | None = None
    method: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # True: the request is carried out, then answered with the failure (a gateway that
    # timed out after GitHub did the work), so a blind retry would do it twice.
    after: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int
    query: str = ""
    installation_id: int | None = None
    at: float = 0.0
    user_login: str | None = None  # the user of a user access token


def _window_wait(
    entries: list[tuple[float, int]], need: int, limit: int, span: float, now: float
) -> float | None:
    """None if `need` more fits in the sliding window; else seconds until it will."""
    total = sum(p for _, p in entries)
    if total + need <= limit or not entries:
        return None  # an empty window admits even an oversized request
    for ts, p in entries:
        total -= p
        if total + need <= limit:
            return ts + span - now
    return span


class FakeState:
    """Everything the fake GitHub knows. Mutate it freely between (or during) requests."""

    def __init__(
        self,
        *,
        app_id: int = 123456,
        slug: str = "policy-enforcer",
        app_name: str = "Policy Enforcer",
        private_key: rsa.RSAPrivateKey | None = None,
        seed: int = 0,
    ) -> None:
        self.app_id = app_id
        self.app_slug = slug
        self.app_name = app_name
        self.app_client_id = f"Iv1.{hashlib.sha1(slug.encode()).hexdigest()[:16]}"
        self._private_key = private_key or _default_private_key()
        # Where the server is reachable; set by FakeGitHub on start and used in every URL.
        self.api_url = "https://api.github.com"
        self.web_url = "https://github.com"
        self.created_at = time.time() - 86400

        self._ids = {
            kind: itertools.count(start)
            for kind, start in {
                "user": 1000,
                "repo": 100000,
                "installation": 10000,
                "issue": 500000,
                "comment": 900000,
                "label": 7000000,
                "reaction": 3000000,
                "commit": 1,
                "team": 4000000,
                "ruleset": 1000,
                "protection": 20000000,
            }.items()
        }
        self.users: dict[str, User] = {}
        self.repos: dict[int, Repo] = {}
        self._name_index: dict[str, int] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, Token] = {}
        self._comments: dict[int, Comment] = {}
        self.app_owner = self.user(f"{slug}-owner", "Organization")
        self.bot = self.user(f"{slug}[bot]", "Bot")

        # Auth
        self.token_ttl_seconds: float = 3600.0

        # The App's OAuth client (the web flow and the manifest flow hand these out).
        self.client_secret = hashlib.sha1(f"{slug}:client-secret:{seed}".encode()).hexdigest()
        # Registered callback URLs; empty: any redirect_uri is accepted.
        self.callback_urls: list[str] = []
        # The App's webhook secret, once the manifest flow has generated one.
        self.webhook_secret: str | None = None
        # The App's webhook (URL, delivery log) that hooks.send_event delivers through.
        from tests.fakegithub.hooks import AppHook  # hooks imports this module

        self.hook = AppHook()
        self.user_token_ttl_seconds: float = USER_TOKEN_TTL
        self.refresh_token_ttl_seconds: float = REFRESH_TOKEN_TTL
        self.oauth_code_ttl_seconds: float = OAUTH_CODE_TTL
        self.manifest_code_ttl_seconds: float = MANIFEST_CODE_TTL
        self.user_tokens: dict[str, UserToken] = {}
        self._refresh_tokens: dict[str, UserToken] = {}
        self.oauth_codes: dict[str, OAuthCode] = {}
        # Browser sessions of the fake's github.com: `user_session` cookie value -> user.
        self.web_sessions: dict[str, User] = {}
        self.manifest_drafts: dict[str, ManifestDraft] = {}
        self.manifest_codes: dict[str, ManifestConversion] = {}

        # Organizations: lower-cased org login -> lower-cased user login -> membership.
        self.memberships: dict[str, dict[str, OrgMembership]] = {}
        # (lower-cased org login, lower-cased team slug) -> Team
        self.teams: dict[tuple[str, str], Team] = {}
        # Organization rulesets: lower-cased org login -> rulesets, oldest first.
        self.org_rulesets: dict[str, list[Ruleset]] = {}
        # GET .../git/trees/{sha}?recursive=1 lists at most this many entries (GitHub:
        # 100,000, or 7 MB), then sets `truncated`.
        self.tree_entry_limit: int = 100_000

        # Rate limits
        self.rate_limit = RateLimitConfig()
        self.secondary = SecondaryLimitConfig()
        self._buckets: dict[tuple[str, str], RateBucket] = {}
        self._points: dict[str, deque[tuple[float, int]]] = {}
        self._content: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

        # GraphQL
        # Blob.text is cut after this many bytes (isTruncated: true); GitHub: 512,000.
        self.graphql_blob_text_limit: int = 512_000
        # Lower-cased full names GraphQL answers NOT_FOUND for, with how many more queries
        # it does so (a new repository GitHub has not replicated yet, say).
        self.graphql_not_found: dict[str, int] = {}
        # Lower-cased full names whose `collaborators` GraphQL refuses (null, FORBIDDEN "Must
        # have push access to view repository collaborators."), as GitHub does to a viewer
        # without push access; an installation otherwise reads them with `metadata`, as REST.
        self.graphql_collaborators_forbidden: set[str] = set()

        # Faults
        self.latency: float = 0.0
        self.fail_rate: float = 0.0
        self.fail_status: int = 502
        self.random = random.Random(seed)
        self.fail_rules: list[FailRule] = []

        # Observations
        self.log: list[RequestRecord] = []
        self.total_requests = 0
        self.rate_limited_requests = 0  # requests that spent primary (core) budget
        self.graphql_requests = 0
        self.graphql_points = 0  # GraphQL budget spent (a query's computed cost)
        self.not_modified_responses = 0
        self.primary_limit_responses = 0
        self.secondary_limit_responses = 0
        self.injected_failures = 0
        self.unauthorized_responses = 0
        self.org_membership_requests = 0  # GET /orgs/{org}/memberships/{username} answered
        self.team_membership_requests = 0  # GET /orgs/{org}/teams/{slug}/memberships/{username}
        self.oauth_codes_issued = 0  # authorize redirects that carried a code
        self.oauth_tokens_issued = 0  # user access tokens from code or refresh exchanges
        self.oauth_errors = 0  # access_token answers with an `error` (and authorize errors)
        self.manifest_conversions = 0  # successful POST /app-manifests/{code}/conversions
        self.in_flight = 0
        self.max_in_flight = 0

    # ----------------------------------------------------------------- app & keys
    @property
    def private_key_pem(self) -> str:
        """PKCS#1 PEM, the format GitHub hands out for App keys."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()

    @property
    def public_key_pem(self) -> str:
        return (
            self._private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def bot_login(self) -> str:
        return self.bot.login

    def next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    # ----------------------------------------------------------------- users
    def user(self, login: str, type: str = "User") -> User:  # `type` as in GitHub's JSON
        """The user with this login, created on first use."""
        found = self.users.get(login.lower())
        if found is None:
            found = User(login=login, id=self.next_id("user"), type=type,
                         created_at=time.time() - 86400)
            self.users[login.lower()] = found
        return found

    def rename_account(self, login: str, new_login: str) -> User:
        """The account changes its login (its repositories' full names follow)."""
        account = self.users.pop(login.lower())
        account.login = new_login
        self.users[new_login.lower()] = account
        return account

    def close_issue(self, full_name: str, number: int, by: str) -> Issue:
        """A person closes an issue in the web UI."""
        issue = self.issue(full_name, number)
        issue.state, issue.state_reason = "closed", "completed"
        issue.closed_at = issue.updated_at = time.time()
        issue.closed_by = self.user(by)
        return issue

    # ----------------------------------------------------------------- organizations & teams
    def _org(self, org: str) -> User:
        account = self.user(org, "Organization")
        if account.type != "Organization":
            raise ValueError(f"{org} is a {account.type}, not an organization")
        return account

    def add_org_member(self, org: str, login: str, role: str = "member", *,
                       state: str = "active") -> OrgMembership:
        """Make `login` a member ("member") or an owner ("admin") of `org`; replaces any
        earlier membership. state="pending" is an invitation not yet accepted."""
        if role not in ORG_ROLES:
            raise ValueError(role)
        if state not in MEMBERSHIP_STATES:
            raise ValueError(state)
        membership = OrgMembership(self._org(org), self.user(login), role, state)
        self.memberships.setdefault(org.lower(), {})[login.lower()] = membership
        return membership

    def remove_org_member(self, org: str, login: str) -> OrgMembership | None:
        """Remove the membership, and (as GitHub does) the user from the org's teams."""
        for (team_org, _), team in self.teams.items():
            if team_org == org.lower():
                team.members.pop(login.lower(), None)
        return self.memberships.get(org.lower(), {}).pop(login.lower(), None)

    def org_membership(self, org: str, login: str) -> OrgMembership | None:
        return self.memberships.get(org.lower(), {}).get(login.lower())

    def add_team(self, org: str, slug: str, members: Iterable[str] = (), *,
                 name: str | None = None, maintainers: Iterable[str] = ()) -> Team:
        """A team of `org`; its members (and maintainers) become org members if they were not."""
        key = (org.lower(), slug.lower())
        if key in self.teams:
            raise ValueError(f"team {org}/{slug} already exists")
        team = Team(self.next_id("team"), self._org(org), slug.lower(), name or slug)
        self.teams[key] = team
        for login in members:
            self.add_team_member(org, slug, login)
        for login in maintainers:
            self.add_team_member(org, slug, login, role="maintainer")
        return team

    def team(self, org: str, slug: str) -> Team:
        return self.teams[(org.lower(), slug.lower())]

    def add_team_member(self, org: str, slug: str, login: str, role: str = "member") -> Team:
        if role not in TEAM_ROLES:
            raise ValueError(role)
        team = self.team(org, slug)
        if self.org_membership(org, login) is None:
            self.add_org_member(org, login)  # GitHub: team members belong to the org
        team.members[login.lower()] = role
        self.user(login)
        return team

    def remove_team_member(self, org: str, slug: str, login: str) -> Team:
        team = self.team(org, slug)
        team.members.pop(login.lower(), None)
        return team

    # ----------------------------------------------------------------- the web flow (OAuth)
    @property
    def client_id(self) -> str:
        """The App's OAuth client id ("Iv1." + hex), as on its settings page."""
        return self.app_client_id

    @client_id.setter
    def client_id(self, value: str) -> None:
        self.app_client_id = value

    def web_session(self, login: str) -> str:
        """Sign `login` in on the fake's github.com: the `user_session` cookie's value."""
        user = self.user(login)
        if user.type != "User":
            raise ValueError(f"{login} is a {user.type}; only users sign in")
        value = secrets.token_urlsafe(32)
        self.web_sessions[value] = user
        return value

    def session_user(self, cookie: str | None) -> User | None:
        return self.web_sessions.get(cookie) if cookie else None

    def issue_oauth_code(self, login: str, redirect_uri: str, *, state: str | None = None,
                         client_id: str | None = None) -> OAuthCode:
        """The code GET /login/oauth/authorize hands the browser (single use, 10 minutes)."""
        code = OAuthCode(
            code=secrets.token_hex(10),
            client_id=client_id or self.client_id,
            redirect_uri=redirect_uri,
            user=self.user(login),
            state=state,
            expires_at=time.time() + self.oauth_code_ttl_seconds,
        )
        self.oauth_codes[code.code] = code
        self.oauth_codes_issued += 1
        return code

    def issue_user_token(self, login: str, *, ttl: float | None = None) -> UserToken:
        """A user access token (ghu_) with its refresh token (ghr_), as the exchange mints."""
        now = time.time()
        token = UserToken(
            token="ghu_" + "".join(secrets.choice(_ALNUM) for _ in range(36)),
            user=self.user(login),
            client_id=self.client_id,
            expires_at=now + (self.user_token_ttl_seconds if ttl is None else ttl),
            refresh_token="ghr_" + "".join(secrets.choice(_ALNUM) for _ in range(76)),
            refresh_expires_at=now + self.refresh_token_ttl_seconds,
        )
        self.user_tokens[token.token] = token
        self._refresh_tokens[token.refresh_token] = token
        self.oauth_tokens_issued += 1
        return token

    def find_refresh_token(self, refresh_token: str) -> UserToken | None:
        return self._refresh_tokens.get(refresh_token)

    def expire_user_tokens(self, login: str | None = None) -> None:
        now = time.time()
        for token in self.user_tokens.values():
            if login is None or token.user.login.lower() == login.lower():
                token.expires_at = min(token.expires_at, now - 1)

    def revoke_user_tokens(self, login: str | None = None) -> int:
        count = 0
        for token in self.user_tokens.values():
            if login is None or token.user.login.lower() == login.lower():
                count += 0 if token.revoked else 1
                token.revoked = True
                token.refresh_used = True
        return count

    def user_installations(self, login: str) -> list[Installation]:
        """The App's installations `login` can access (GET /user/installations): the user's
        own account's, those of organizations the user is an active member of, and those
        holding a repository the user collaborates on."""
        user = self.user(login)
        key = login.lower()
        found: list[Installation] = []
        for inst in sorted(self.installations.values(), key=lambda i: i.id):
            acct = inst.account
            membership = self.org_membership(acct.login, login)
            if (acct is user
                    or (membership is not None and membership.state == "active")
                    or any(r.collaborators.get(key, "none") != "none" for r in inst.repos)):
                found.append(inst)
        return found

    # ----------------------------------------------------------------- the manifest flow
    def create_manifest_code(self, manifest: Mapping[str, Any], owner: str, *,
                             name: str | None = None) -> ManifestConversion:
        """What confirming a manifest on .../settings/apps/new creates: a code for
        POST /app-manifests/{code}/conversions (single use, 1 hour)."""
        conversion = ManifestConversion(
            code=secrets.token_hex(10),
            manifest=dict(manifest),
            owner=self.user(owner),
            name=name or str(manifest.get("name") or self.app_name),
            expires_at=time.time() + self.manifest_code_ttl_seconds,
        )
        self.manifest_codes[conversion.code] = conversion
        return conversion

    # ----------------------------------------------------------------- installations
    def add_installation(
        self,
        login: str,
        repos: int | Sequence[str | Mapping[str, Any]] = 0,
        *,
        account_type: str = "Organization",
        repository_selection: str = "all",
        permissions: Mapping[str, str] | None = None,
        events: Sequence[str] | None = None,
    ) -> Installation:
        """Install the app on account `login`, creating its repositories.

        `repos` is a count (repositories named repo-000, repo-001, ...) or a list of names or
        of add_repo keyword dicts (each with "name").
        """
        account = self.user(login, account_type)
        account.type = account_type  # the login may have been seen before as another type
        now = time.time()
        inst = Installation(
            id=self.next_id("installation"),
            account=account,
            repository_selection=repository_selection,
            created_at=now,
            updated_at=now,
        )
        if permissions is not None:
            inst.permissions = dict(permissions)
        if events is not None:
            inst.events = list(events)
        self.installations[inst.id] = inst
        specs: Iterable[str | Mapping[str, Any]] = (
            [f"repo-{i:03d}" for i in range(repos)] if isinstance(repos, int) else repos
        )
        for spec in specs:
            if isinstance(spec, str):
                self.add_repo(login, spec)
            else:
                kwargs = dict(spec)
                self.add_repo(login, kwargs.pop("name"), **kwargs)
        return inst

    def installation(self, ident: int | str) -> Installation:
        """An installation by id or by account login."""
        if isinstance(ident, int):
            return self.installations[ident]
        for inst in self.installations.values():
            if inst.account.login.lower() == ident.lower():
                return inst
        raise KeyError(ident)

    def installation_for(self, repo: Repo) -> Installation | None:
        for inst in self.installations.values():
            if any(r is repo for r in inst.repos):
                return inst
        return None

    def remove_installation(self, installation_id: int) -> Installation:
        """Uninstall: the installation disappears and its tokens stop working."""
        self.revoke_tokens(installation_id)
        return self.installations.pop(installation_id)

    def suspend_installation(self, installation_id: int, by: str | None = None) -> Installation:
        inst = self.installations[installation_id]
        inst.suspended_at = time.time()
        inst.suspended_by = self.user(by) if by else inst.account
        self.revoke_tokens(installation_id)
        return inst

    def unsuspend_installation(self, installation_id: int) -> Installation:
        inst = self.installations[installation_id]
        inst.suspended_at = None
        inst.suspended_by = None
        return inst

    # ----------------------------------------------------------------- repositories
    def add_repo(
        self,
        owner: str | Installation,
        name: str,
        *,
        private: bool | None = None,
        visibility: str | None = None,
        archived: bool = False,
        fork: bool = False,
        default_branch: str = "main",
        files: Mapping[str, str] | None = None,
        workflow_permissions: str | None = "read",
        description: str | None = None,
        topics: Sequence[str] = (),
        pushed_at: float | None = None,
        created_at: float | None = None,
        updated_at: float | None = None,
        installed: bool = True,
        owner_type: str = "Organization",
        empty: bool = False,
    ) -> Repo:
        """Create a repository; it joins its owner's installation unless installed=False.
        `empty`: no commit at all (as created without a README): no branch exists until the
        first push (set_file)."""
        login = owner.account.login if isinstance(owner, Installation) else owner
        if self.find_repo(f"{login}/{name}") is not None:
            raise ValueError(f"repository {login}/{name} already exists")
        if visibility is None:
            visibility = "private" if private else "public"
        now = time.time()
        repo = Repo(
            id=self.next_id("repo"),
            owner=self.user(login, owner_type),
            name=name,
            visibility=visibility,
            archived=archived,
            fork=fork,
            default_branch=default_branch,
            description=description,
            topics=list(topics),
            created_at=created_at if created_at is not None else now - 3600,
            updated_at=updated_at if updated_at is not None else now - 60,
            pushed_at=pushed_at if pushed_at is not None else now - 60,
            workflow_permissions=workflow_permissions,
        )
        if empty:
            if files:
                raise ValueError("an empty repository has no files")
        else:
            repo.branches[default_branch] = dict(files or {})
            repo.heads[default_branch] = self._commit_sha(repo, default_branch)
            repo.commits[repo.heads[default_branch]] = dict(repo.branches[default_branch])
        self.repos[repo.id] = repo
        if installed:
            inst = (
                owner
                if isinstance(owner, Installation)
                else next(
                    (i for i in self.installations.values() if i.account.login.lower()
                     == login.lower()),
                    None,
                )
            )
            if inst is not None:
                inst.repos.append(repo)
        return repo

    def find_repo(self, full_name: str) -> Repo | None:
        key = full_name.lower()
        # The index is only a cache: verified on hit, rebuilt on miss, so renames done by
        # assigning attributes directly still resolve.
        repo = self.repos.get(self._name_index.get(key, -1))
        if repo is not None and repo.full_name.lower() == key:
            return repo
        self._name_index = {r.full_name.lower(): r.id for r in self.repos.values()}
        return self.repos.get(self._name_index.get(key, -1))

    def repo(self, full_name: str) -> Repo:
        found = self.find_repo(full_name)
        if found is None:
            raise KeyError(full_name)
        return found

    def add_repo_to_installation(self, full_name: str, installation_id: int | None = None) -> Repo:
        repo = self.repo(full_name)
        inst = (
            self.installations[installation_id]
            if installation_id is not None
            else self.installation(repo.owner.login)
        )
        if repo not in inst.repos:
            inst.repos.append(repo)
        return repo

    def remove_repo_from_installation(self, full_name: str) -> Repo:
        repo = self.repo(full_name)
        for inst in self.installations.values():
            inst.repos = [r for r in inst.repos if r is not repo]
        return repo

    def delete_repo(self, full_name: str) -> Repo:
        repo = self.remove_repo_from_installation(full_name)
        del self.repos[repo.id]
        return repo

    def rename_repo(self, full_name: str, new_name: str) -> Repo:
        repo = self.repo(full_name)
        repo.name = new_name
        repo.updated_at = time.time()
        return repo

    def transfer_repo(self, full_name: str, new_owner: str, *, owner_type: str = "Organization"
                      ) -> Repo:
        """Move the repository to another account (and that account's installation, if any)."""
        repo = self.remove_repo_from_installation(full_name)
        repo.owner = self.user(new_owner, owner_type)
        repo.updated_at = time.time()
        for inst in self.installations.values():
            if inst.account is repo.owner:
                inst.repos.append(repo)
        return repo

    def archive_repo(self, full_name: str, archived: bool = True) -> Repo:
        repo = self.repo(full_name)
        repo.archived = archived
        repo.updated_at = time.time()
        return repo

    def set_visibility(self, full_name: str, visibility: str) -> Repo:
        if visibility not in ("public", "private", "internal"):
            raise ValueError(visibility)
        repo = self.repo(full_name)
        repo.visibility = visibility
        repo.updated_at = time.time()
        return repo

    # ----------------------------------------------------------------- files & settings
    def _commit_sha(self, repo: Repo, branch: str) -> str:
        # A fresh sha per change (like a commit), yet the same across runs of a test.
        seq = self.next_id("commit")
        return hashlib.sha1(f"{repo.id}:{branch}:{seq}".encode()).hexdigest()

    def set_file(self, full_name: str, path: str, text: str, *, branch: str | None = None) -> str:
        """Create or replace a file; returns the new head commit sha of the branch."""
        repo = self.repo(full_name)
        branch = branch or repo.default_branch
        repo.branches.setdefault(branch, {})[path.lstrip("/")] = text
        return self._touch(repo, branch)

    def delete_file(self, full_name: str, path: str, *, branch: str | None = None) -> str:
        repo = self.repo(full_name)
        branch = branch or repo.default_branch
        repo.branches.setdefault(branch, {}).pop(path.lstrip("/"), None)
        return self._touch(repo, branch)

    def _touch(self, repo: Repo, branch: str) -> str:
        repo.heads[branch] = self._commit_sha(repo, branch)
        repo.commits[repo.heads[branch]] = dict(repo.branches.get(branch, {}))
        repo.pushed_at = repo.updated_at = time.time()
        return repo.heads[branch]

    def set_workflow_permissions(self, full_name: str, permission: str | None) -> Repo:
        """"read" / "write", or None to disable GitHub Actions for the repository."""
        if permission not in ("read", "write", None):
            raise ValueError(permission)
        repo = self.repo(full_name)
        repo.workflow_permissions = permission
        return repo

    def set_org_workflow_permissions(self, login: str, permission: str) -> User:
        """The organization's default GITHUB_TOKEN permissions: "read" or "write"."""
        if permission not in ("read", "write"):
            raise ValueError(permission)
        org = self.user(login, "Organization")
        org.default_workflow_permissions = permission
        return org

    def set_permission(self, full_name: str, username: str, permission: str) -> None:
        """A user's role: admin, maintain, write, triage, read or none."""
        if permission not in PERMISSION_LEVELS:
            raise ValueError(permission)
        self.user(username)
        self.repo(full_name).collaborators[username.lower()] = permission

    def permission(self, full_name: str, username: str) -> str:
        return self.repo(full_name).collaborators.get(username.lower(), "none")

    def remove_collaborator(self, full_name: str, username: str) -> str:
        """Remove a direct collaborator; returns the role they had ("none": they had none)."""
        return self.repo(full_name).collaborators.pop(username.lower(), "none")

    # ----------------------------------------------------------------- settings & access
    # Edits replace BranchProtection, Ruleset and SecuritySettings objects rather than
    # change them: a reference taken before an edit is the old version, which the webhook
    # builders (tests/fakegithub/webhooks.py) take as `previous`.
    def set_repo_settings(self, full_name: str, **settings: Any) -> Repo:
        """Change REPO_SETTINGS (has_wiki, allow_squash_merge, ...), `description`, `topics`
        or `has_issues` as the settings page does (updated_at moves). As GitHub, at least
        one merge method stays allowed, and topics are lowercase (a-z, 0-9, -), 20 at most."""
        repo = self.repo(full_name)
        unknown = set(settings) - {*REPO_SETTINGS, "description", "topics", "has_issues"}
        if unknown:
            raise TypeError(f"unknown repository settings: {sorted(unknown)}")
        merged = {**repo.settings(), **settings}
        if not (merged["allow_merge_commit"] or merged["allow_squash_merge"]
                or merged["allow_rebase_merge"]):
            raise ValueError("at least one merge method must stay allowed")
        topics = list(settings.get("topics", repo.topics))
        if len(topics) > 20 or any(not t or len(t) > 50 or t != t.lower()
                                   or not all(c.isalnum() or c == "-" for c in t)
                                   for t in topics):
            raise ValueError(f"invalid topics: {topics}")
        for key, value in settings.items():
            setattr(repo, key, list(value) if key == "topics" else value)
        repo.updated_at = time.time()
        return repo

    def protect_branch(self, full_name: str, pattern: str, **settings: Any) -> BranchProtection:
        """Create the classic protection rule for `pattern` (a branch name, or an fnmatch
        pattern such as "release/*"), or change the existing one; `settings` are
        BranchProtection's fields: required_status_checks=["ci"], strict, enforce_admins,
        required_approving_review_count (0-6; None: no reviews required),
        dismiss_stale_reviews, require_code_owner_reviews, required_signatures,
        allow_force_pushes, allow_deletions, required_conversation_resolution, ..."""
        repo = self.repo(full_name)
        editable = {f.name for f in dataclass_fields(BranchProtection)} - {
            "id", "pattern", "created_at", "updated_at"}
        unknown = set(settings) - editable
        if unknown:
            raise TypeError(f"unknown branch protection settings: {sorted(unknown)}")
        count = settings.get("required_approving_review_count")
        if count is not None and not 0 <= count <= 6:
            raise ValueError("required_approving_review_count must be 0-6")
        if settings.get("required_status_checks") is not None:
            settings["required_status_checks"] = list(settings["required_status_checks"])
        if not pattern:
            raise ValueError("a branch protection rule needs a pattern")
        now = time.time()
        old = self.protection(full_name, pattern)
        if old is None:
            rule = BranchProtection(self.next_id("protection"), pattern, created_at=now,
                                    updated_at=now, **settings)
            repo.protections.append(rule)
            return rule
        rule = replace(old, updated_at=now, **settings)
        repo.protections[repo.protections.index(old)] = rule
        return rule

    def protection(self, full_name: str, pattern: str) -> BranchProtection | None:
        """The classic protection rule whose pattern is `pattern` (not: that matches it)."""
        return next((p for p in self.repo(full_name).protections if p.pattern == pattern), None)

    def unprotect_branch(self, full_name: str, pattern: str) -> BranchProtection:
        """Delete the rule for `pattern` (KeyError: none); returns it."""
        rule = self.protection(full_name, pattern)
        if rule is None:
            raise KeyError(pattern)
        self.repo(full_name).protections.remove(rule)
        return rule

    def _ruleset_list(self, where: str) -> list[Ruleset]:
        if "/" in where:
            return self.repo(where).rulesets
        return self.org_rulesets.setdefault(self._org(where).login.lower(), [])

    def add_ruleset(
        self,
        where: str,
        name: str,
        rules: Iterable[str | Mapping[str, Any]] = (),
        *,
        enforcement: str = "active",
        include: Sequence[str] = ("~DEFAULT_BRANCH",),
        exclude: Sequence[str] = (),
        repositories: Sequence[str] = ("~ALL",),
        exclude_repositories: Sequence[str] = (),
        repository_ids: Sequence[int] | None = None,
        bypass_actors: Sequence[Mapping[str, Any]] = (),
    ) -> Ruleset:
        """A branch ruleset of the repository `where` ("owner/name") or of the organization
        `where`. `rules`: type names (parameters as GitHub fills them in) or dicts from
        `ruleset_rule`. `include` / `exclude`: "refs/heads/<fnmatch>", "~DEFAULT_BRANCH" or
        "~ALL". An organization's ruleset applies to the repositories whose names match
        `repositories` and not `exclude_repositories` (fnmatch, "~ALL"), or, given, to
        `repository_ids`. enforcement: "active", "evaluate" or "disabled"."""
        rulesets = self._ruleset_list(where)
        if any(r.name == name for r in rulesets):
            raise ValueError(f"{where} already has a ruleset named {name!r}")
        now = time.time()
        ruleset = Ruleset(self.next_id("ruleset"), name, created_at=now, updated_at=now,
                          bypass_actors=[dict(a) for a in bypass_actors])
        if "/" in where:
            ruleset.repo = self.repo(where)
        else:
            ruleset.org = self._org(where)
        ruleset = self._ruleset_with(ruleset, rules, enforcement, include, exclude,
                                     repositories, exclude_repositories, repository_ids)
        rulesets.append(ruleset)
        return ruleset

    def update_ruleset(
        self,
        ruleset: Ruleset,
        *,
        name: str | None = None,
        rules: Iterable[str | Mapping[str, Any]] | None = None,
        enforcement: str | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        repositories: Sequence[str] | None = None,
        exclude_repositories: Sequence[str] | None = None,
        repository_ids: Sequence[int] | None = None,
    ) -> Ruleset:
        """Change a ruleset (what is not given stays); returns the new version."""
        rulesets = self._ruleset_list(ruleset.source)
        ref = ruleset.conditions.get("ref_name", {})
        names = ruleset.conditions.get("repository_name", {})
        ids = ruleset.conditions.get("repository_id", {}).get("repository_ids")
        new = self._ruleset_with(
            replace(ruleset, name=name or ruleset.name, updated_at=time.time()),
            ruleset.rules if rules is None else rules,
            enforcement or ruleset.enforcement,
            ref.get("include", []) if include is None else include,
            ref.get("exclude", []) if exclude is None else exclude,
            names.get("include", ["~ALL"]) if repositories is None else repositories,
            names.get("exclude", []) if exclude_repositories is None else exclude_repositories,
            ids if repository_ids is None else repository_ids)
        rulesets[rulesets.index(ruleset)] = new
        return new

    def delete_ruleset(self, ruleset: Ruleset) -> Ruleset:
        self._ruleset_list(ruleset.source).remove(ruleset)
        return ruleset

    def ruleset(self, where: str, name: str) -> Ruleset:
        return next(r for r in self._ruleset_list(where) if r.name == name)

    @staticmethod
    def _ruleset_with(ruleset: Ruleset, rules: Iterable[str | Mapping[str, Any]],
                      enforcement: str, include: Sequence[str], exclude: Sequence[str],
                      repositories: Sequence[str], exclude_repositories: Sequence[str],
                      repository_ids: Sequence[int] | None) -> Ruleset:
        if enforcement not in RULESET_ENFORCEMENTS:
            raise ValueError(enforcement)
        for pattern in (*include, *exclude):
            # GitHub matches the full ref name: "main" alone would match no branch.
            if not pattern.startswith(("refs/", "~")) or (
                    pattern.startswith("~") and pattern not in ("~DEFAULT_BRANCH", "~ALL")):
                raise ValueError(f"ref pattern {pattern!r}: use refs/heads/..., "
                                 "~DEFAULT_BRANCH or ~ALL")
        conditions: dict[str, Any] = {"ref_name": {"include": list(include),
                                                   "exclude": list(exclude)}}
        if ruleset.org is not None:
            if repository_ids is not None:
                conditions["repository_id"] = {"repository_ids": list(repository_ids)}
            else:
                conditions["repository_name"] = {"include": list(repositories),
                                                 "exclude": list(exclude_repositories),
                                                 "protected": False}
        normalized = [ruleset_rule(r) if isinstance(r, str)
                      else ruleset_rule(str(r["type"]), **dict(r.get("parameters") or {}))
                      for r in rules]
        return replace(ruleset, enforcement=enforcement, conditions=conditions,
                       rules=normalized)

    def add_team_access(self, full_name: str, slug: str, permission: str = "write") -> Team:
        """Give the owner organization's team `slug` a role on the repository (or change
        it): admin, maintain, write, triage or read (pull / push are accepted too)."""
        role = {"pull": "read", "push": "write"}.get(permission, permission)
        if role not in PERMISSION_LEVELS or role == "none":
            raise ValueError(permission)
        repo = self.repo(full_name)
        team = self.team(repo.owner.login, slug)  # KeyError: the owner has no such team
        repo.team_access[team.slug] = role
        return team

    def remove_team_access(self, full_name: str, slug: str) -> str:
        """Take the team's access away (KeyError: it had none); returns its old role."""
        return self.repo(full_name).team_access.pop(slug.lower())

    def set_security(self, full_name: str, **features: bool) -> SecuritySettings:
        """Turn security features (SecuritySettings' fields) on or off; returns the new
        settings. As GitHub: secret scanning of a private or internal repository needs
        advanced_security (a public one has no such setting), push protection needs secret
        scanning, Dependabot security updates need Dependabot alerts; turning one off turns
        off what needs it."""
        repo = self.repo(full_name)
        new = replace(repo.security, **features)
        if not repo.private and new.advanced_security:
            raise ValueError("a public repository has no advanced_security setting")
        needs = [("secret_scanning_push_protection", "secret_scanning"),
                 ("dependabot_security_updates", "dependabot_alerts")]
        if repo.private:
            needs.insert(0, ("secret_scanning", "advanced_security"))
        for feature, needed in needs:
            if getattr(new, feature) and not getattr(new, needed):
                if features.get(feature):
                    raise ValueError(f"{feature} needs {needed}")
                setattr(new, feature, False)
        repo.security = new
        return new

    def set_custom_properties(self, full_name: str,
                              values: Mapping[str, str | Sequence[str] | None]
                              ) -> dict[str, str | list[str] | None]:
        """Set custom property values of an organization's repository (None unsets one);
        returns the new values (the dict is replaced: one taken before is the old one)."""
        repo = self.repo(full_name)
        if repo.owner.type != "Organization":
            raise ValueError("custom properties belong to organization repositories")
        new = dict(repo.custom_properties)
        for name, value in values.items():
            if value is None:
                new.pop(name, None)
            else:
                new[name] = value if isinstance(value, str) else list(value)
        repo.custom_properties = new
        return new

    # ----------------------------------------------------------------- labels & issues
    def add_label(
        self,
        full_name: str,
        name: str,
        color: str = DEFAULT_LABEL_COLOR,
        description: str | None = None,
    ) -> Label:
        repo = self.repo(full_name)
        if name.lower() in repo.labels:
            raise ValueError(f"label {name!r} already exists in {full_name}")
        label = Label(id=self.next_id("label"), name=name, color=color, description=description)
        repo.labels[name.lower()] = label
        return label

    def ensure_labels(self, repo: Repo, names: Iterable[str]) -> list[str]:
        """Canonical names for `names`, creating missing labels as GitHub does on issue writes."""
        out: list[str] = []
        for name in names:
            label = repo.labels.get(name.lower())
            if label is None:
                label = Label(id=self.next_id("label"), name=name)
                repo.labels[name.lower()] = label
            if label.name not in out:
                out.append(label.name)
        return out

    def add_issue(
        self,
        full_name: str,
        title: str,
        body: str | None = "",
        *,
        user_login: str | None = None,
        user_type: str = "User",
        labels: Sequence[str] = (),
        state: str = "open",
        state_reason: str | None = None,
        created_at: float | None = None,
    ) -> Issue:
        """Arrange an existing issue; user_login None means the app's bot opened it."""
        repo = self.repo(full_name)
        user = self.bot if user_login is None else self.user(user_login, user_type)
        now = created_at if created_at is not None else time.time()
        issue = Issue(
            id=self.next_id("issue"),
            repo=repo,
            number=repo.next_issue_number,
            title=title,
            body=body,
            user=user,
            labels=self.ensure_labels(repo, labels),
            created_at=now,
            updated_at=now,
            via_app=user is self.bot,
        )
        repo.next_issue_number += 1
        repo.issues[issue.number] = issue
        if state == "closed":
            issue.state = "closed"
            issue.state_reason = state_reason or "completed"
            issue.closed_at = now
            issue.closed_by = user
        return issue

    def issues(self, full_name: str) -> list[Issue]:
        """All issues of the repository (open and closed), by number."""
        repo = self.repo(full_name)
        return [repo.issues[n] for n in sorted(repo.issues)]

    def issue(self, full_name: str, number: int) -> Issue:
        return self.repo(full_name).issues[number]

    def new_comment(self, issue: Issue, user: User, body: str) -> Comment:
        now = time.time()
        comment = Comment(
            id=self.next_id("comment"),
            repo=issue.repo,
            issue_number=issue.number,
            user=user,
            body=body,
            created_at=now,
            updated_at=now,
            via_app=user is self.bot,
        )
        issue.comments.append(comment)
        issue.updated_at = now
        self._comments[comment.id] = comment
        return comment

    def add_issue_comment(
        self,
        full_name: str,
        issue_number: int,
        user_login: str,
        body: str,
        user_type: str = "User",
    ) -> dict[str, Any]:
        """Someone comments on an issue; returns the comment as the REST API renders it."""
        from tests.fakegithub import render  # render imports this module

        issue = self.issue(full_name, issue_number)
        comment = self.new_comment(issue, self.user(user_login, user_type), body)
        return render.comment(self, comment)

    def comment(self, comment_id: int) -> Comment:
        comment = self._comments[comment_id]
        return comment

    def find_comment(self, repo: Repo, comment_id: int) -> Comment | None:
        comment = self._comments.get(comment_id)
        if comment is None or comment.repo is not repo:
            return None
        if comment not in repo.issues[comment.issue_number].comments:
            return None  # deleted
        return comment

    def delete_comment(self, comment_id: int) -> None:
        comment = self._comments.pop(comment_id)
        issue = comment.repo.issues[comment.issue_number]
        issue.comments = [c for c in issue.comments if c is not comment]

    def comments(self, full_name: str, issue_number: int) -> list[Comment]:
        return list(self.issue(full_name, issue_number).comments)

    def reactions(self, comment_id: int) -> list[Reaction]:
        return list(self._comments[comment_id].reactions)

    # ----------------------------------------------------------------- tokens
    def issue_token(
        self,
        installation_id: int,
        *,
        ttl: float | None = None,
        repo_ids: Iterable[int] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> Token:
        """Mint an installation token directly (what POST .../access_tokens does)."""
        inst = self.installations[installation_id]
        alphabet = string.ascii_letters + string.digits
        value = "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))
        token = Token(
            token=value,
            installation_id=installation_id,
            expires_at=time.time() + (self.token_ttl_seconds if ttl is None else ttl),
            repo_ids=None if repo_ids is None else frozenset(repo_ids),
            permissions=dict(permissions if permissions is not None else inst.permissions),
        )
        self.tokens[value] = token
        return token

    def revoke_tokens(self, installation_id: int | None = None) -> int:
        """Revoke every token (of one installation); returns how many were live."""
        count = 0
        for token in self.tokens.values():
            if installation_id is None or token.installation_id == installation_id:
                count += 0 if token.revoked else 1
                token.revoked = True
        return count

    def expire_tokens(self, installation_id: int | None = None) -> None:
        now = time.time()
        for token in self.tokens.values():
            if installation_id is None or token.installation_id == installation_id:
                token.expires_at = min(token.expires_at, now - 1)

    def live_tokens(self, installation_id: int | None = None) -> list[Token]:
        now = time.time()
        return [
            t
            for t in self.tokens.values()
            if t.valid(now) and (installation_id is None or t.installation_id == installation_id)
        ]

    # ----------------------------------------------------------------- rate limits
    def bucket(self, key: str, resource: str = "core") -> RateBucket:
        """Primary budget for `key` ("installation:<id>", "user:<id>", "app" or "anonymous"),
        rolled over when due."""
        now = time.time()
        cfg = self.rate_limit
        limit = cfg.graphql_limit if resource == "graphql" else cfg.limit
        if resource == "core" and key.startswith("installation:"):
            limit = cfg.installation_limits.get(int(key.split(":", 1)[1]), limit)
        elif key == "anonymous":
            limit = cfg.anonymous_limit
        found = self._buckets.get((key, resource))
        if found is None or now >= found.reset_at:
            reset_at = now + self.rate_limit.reset_after_seconds
            found = RateBucket(limit=limit, used=0, reset_at=reset_at)
            self._buckets[(key, resource)] = found
        found.limit = limit
        return found

    def remaining(self, installation_id: int, resource: str = "core") -> int:
        return self.bucket(f"installation:{installation_id}", resource).remaining

    def exhaust_rate_limit(self, installation_id: int, resource: str = "core") -> None:
        b = self.bucket(f"installation:{installation_id}", resource)
        b.used = b.limit

    def reset_rate_limits(self) -> None:
        self._buckets.clear()

    def reset_secondary(self) -> None:
        self._points.clear()
        self._content.clear()
        self._blocked_until.clear()

    def secondary_check(self, key: str, method: str, content: bool, concurrent: int,
                        points: int | None = None) -> int | None:
        """Seconds to wait when this request trips a secondary limit, else None (and record it).

        The wait is honest: at least `secondary.retry_after`, and long enough for the sliding
        windows to admit the request, so a client that obeys retry-after gets through.
        """
        cfg = self.secondary
        if not cfg.enabled:
            return None
        now = time.time()
        blocked = self._blocked_until.get(key, 0.0)
        if now < blocked:
            return max(1, math.ceil(blocked - now))
        if points is None:
            points = 1 if method in ("GET", "HEAD", "OPTIONS") else 5
        window = self._points.setdefault(key, deque())
        while window and window[0][0] <= now - cfg.minute_seconds:
            window.popleft()
        created = self._content.setdefault(key, deque())
        while created and created[0] <= now - cfg.hour_seconds:
            created.popleft()
        waits = [_window_wait(list(window), points, cfg.points_per_minute,
                              cfg.minute_seconds, now)]
        if content:
            recent = [(t, 1) for t in created if t > now - cfg.minute_seconds]
            waits.append(_window_wait(recent, 1, cfg.content_per_minute, cfg.minute_seconds, now))
            waits.append(_window_wait([(t, 1) for t in created], 1, cfg.content_per_hour,
                                      cfg.hour_seconds, now))
        if concurrent > cfg.max_concurrent or any(w is not None for w in waits):
            retry = max([float(cfg.retry_after)] + [w for w in waits if w is not None])
            seconds = max(1, math.ceil(retry))
            self._blocked_until[key] = now + seconds
            return seconds
        window.append((now, points))
        if content:
            created.append(now)
        return None

    # ----------------------------------------------------------------- faults
    def fail_next(
        self,
        n: int = 1,
        status: int = 502,
        *,
        path_prefix: str | None = None,
        method: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        after: bool = False,
    ) -> FailRule:
        """Make the next `n` matching requests fail with `status` before any other processing
        (or, with `after`, once the request has been carried out)."""
        rule = FailRule(n, status, path_prefix, method, body, dict(headers or {}), after)
        self.fail_rules.append(rule)
        return rule

    def seed(self, value: int) -> None:
        """Reseed the fault RNG so `fail_rate` failures land on the same requests every run."""
        self.random.seed(value)

    def pick_failure(self, method: str, path: str, *, after: bool = False) -> FailRule | None:
        for rule in self.fail_rules:
            if rule.remaining > 0 and rule.after == after and rule.matches(method, path):
                rule.remaining -= 1
                return rule
        self.fail_rules = [r for r in self.fail_rules if r.remaining > 0]
        if self.fail_rate > 0 and self.random.random() < self.fail_rate:
            return FailRule(0, self.fail_status)
        return None

    # ----------------------------------------------------------------- observations
    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) for every request served, in order."""
        return [(r.method, r.path, r.status) for r in self.log]

    def count_requests(self, method: str | None = None, path_prefix: str = "") -> int:
        return sum(
            1
            for r in self.log
            if (method is None or r.method == method.upper()) and r.path.startswith(path_prefix)
        )

    def clear_log(self) -> None:
        self.log.clear()
