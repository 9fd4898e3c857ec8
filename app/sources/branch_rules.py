"""The rules that protect a branch: classic branch protection and active rulesets.

Classic protection comes with the batched GraphQL query (`Ref.branchProtectionRule`: the
rule GitHub applies to that branch, for the default branch and each listed one), so it
costs no REST call. Rulesets: `GET /repos/{o}/{r}/rules/branches/{b}` (conditional: an
unchanged answer is a free 304) per existing branch; it lists the rules of every *active*
ruleset that applies, repository or organization level (rulesets in `evaluate` or
`disabled` mode are not returned, so they never count). A listed branch that does not
exist has neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from app.sources.base import Needs, Reader, RepoRef, Source, Unreadable


@dataclass(frozen=True)
class Protection:
    """What one branch requires, from classic protection or rulesets, in GitHub's REST
    names. None: not required by that mechanism."""

    required_approving_review_count: int | None = None
    dismiss_stale_reviews: bool = False
    require_code_owner_reviews: bool = False
    required_status_checks: tuple[str, ...] | None = None
    enforce_admins: bool = False
    # True: force pushes / deletions are blocked.
    blocks_force_pushes: bool = False
    blocks_deletions: bool = False
    required_signatures: bool = False
    required_conversation_resolution: bool = False


@dataclass(frozen=True)
class BranchRules:
    branch: str
    # None: the branch has no classic protection.
    classic: Protection | None
    # The combined rules of the active rulesets that apply (None: no active ruleset).
    rulesets: Protection | None
    # The rulesets the rules came from ("Repository:name" / "Organization:name").
    sources: tuple[str, ...] = ()
    # Why a part could not be read (403: the App lacks a permission); None when it was.
    classic_unreadable: str | None = None
    # False: no such branch (nothing protects it).
    exists: bool = True


@dataclass(frozen=True)
class AllBranchRules:
    # branch name -> its rules; the default branch is always there.
    branches: Mapping[str, BranchRules] = field(default_factory=dict)
    default_branch: str = "main"

    def of(self, branch: str | None = None) -> BranchRules:
        return self.branches[branch or self.default_branch]


RULE_FIELDS = ("pattern requiresApprovingReviews requiredApprovingReviewCount "
               "dismissesStaleReviews requiresCodeOwnerReviews requiresStatusChecks "
               "requiredStatusCheckContexts isAdminEnforced allowsForcePushes allowsDeletions "
               "requiresCommitSignatures requiresConversationResolution")


def parse_graphql_rule(rule: Mapping[str, Any]) -> Protection:
    """A classic rule as GraphQL's BranchProtectionRule gives it."""
    reviews = bool(rule.get("requiresApprovingReviews"))
    return Protection(
        required_approving_review_count=int(rule.get("requiredApprovingReviewCount") or 0)
        if reviews else None,
        dismiss_stale_reviews=reviews and bool(rule.get("dismissesStaleReviews")),
        require_code_owner_reviews=reviews and bool(rule.get("requiresCodeOwnerReviews")),
        required_status_checks=tuple(str(c) for c in rule.get("requiredStatusCheckContexts")
                                     or []) if rule.get("requiresStatusChecks") else None,
        enforce_admins=bool(rule.get("isAdminEnforced")),
        blocks_force_pushes=not rule.get("allowsForcePushes"),
        blocks_deletions=not rule.get("allowsDeletions"),
        required_signatures=bool(rule.get("requiresCommitSignatures")),
        required_conversation_resolution=bool(rule.get("requiresConversationResolution")),
    )


def parse_rules(rules: list[Any]) -> tuple[Protection | None, tuple[str, ...]]:
    """Combine the active rules for a branch (the strictest of each kind wins)."""
    if not rules:
        return None, ()
    count: int | None = None
    dismiss = owners = threads = signatures = force = deletion = False
    contexts: list[str] | None = None
    sources: list[str] = []
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        kind = rule.get("type")
        raw = rule.get("parameters")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        src = f"{rule.get('ruleset_source_type', 'Repository')}:{rule.get('ruleset_source', '')}"
        if src not in sources:
            sources.append(src)
        if kind == "pull_request":
            n = int(params.get("required_approving_review_count") or 0)
            count = n if count is None else max(count, n)
            dismiss = dismiss or bool(params.get("dismiss_stale_reviews_on_push"))
            owners = owners or bool(params.get("require_code_owner_review"))
            threads = threads or bool(params.get("required_review_thread_resolution"))
        elif kind == "required_status_checks":
            contexts = (contexts or []) + [
                str(c.get("context")) for c in params.get("required_status_checks") or []
                if isinstance(c, dict) and c.get("context")]
        elif kind == "non_fast_forward":
            force = True
        elif kind == "deletion":
            deletion = True
        elif kind == "required_signatures":
            signatures = True
    return Protection(
        required_approving_review_count=count, dismiss_stale_reviews=dismiss,
        require_code_owner_reviews=owners,
        required_status_checks=tuple(dict.fromkeys(contexts)) if contexts is not None else None,
        # A ruleset binds admins too unless they are bypass actors, which this endpoint
        # does not list; an active ruleset counts as enforced for admins.
        enforce_admins=True, blocks_force_pushes=force, blocks_deletions=deletion,
        required_signatures=signatures, required_conversation_resolution=threads,
    ), tuple(sources)


# The GraphQL aliases: `bp` for the default branch, `bp0`... for the listed ones.
_ALIAS = "bp"


def _listed(needs: Needs) -> list[str]:
    return sorted(needs.branches)


@dataclass(frozen=True)
class _Classic:
    """What GraphQL said, per branch: its rule (None: unprotected), or missing."""

    default_branch: str
    rules: dict[str, Protection | None]
    missing: frozenset[str]
    unreadable: str | None = None


class BranchRulesSource(Source[AllBranchRules]):
    name: ClassVar[str] = "branch_rules"
    stale_on: ClassVar[frozenset[str]] = frozenset({
        "branch_protection_rule", "repository_ruleset", "repository.edited"})
    cache: ClassVar[str] = "etag"

    def graphql(self, needs: Needs, ref: str = "HEAD") -> tuple[str, dict[str, str]]:
        rule = f"branchProtectionRule {{ {RULE_FIELDS} }}"
        fields = [f"{_ALIAS}: defaultBranchRef {{ name {rule} }}"]
        variables: dict[str, str] = {}
        for i, branch in enumerate(_listed(needs)):
            fields.append(f"{_ALIAS}{i}: ref(qualifiedName: ${_ALIAS}{i}) {{ name {rule} }}")
            variables[f"{_ALIAS}{i}"] = f"refs/heads/{branch}"
        return "\n  ".join(fields), variables

    def owns(self, alias: str) -> bool:
        return alias == _ALIAS or (alias.startswith(_ALIAS) and alias[len(_ALIAS):].isdigit())

    def _parse(self, node: Mapping[str, Any], needs: Needs, unreadable: str | None
               ) -> _Classic:
        default = node.get(_ALIAS)
        name = str(default["name"]) if isinstance(default, dict) and default.get("name") \
            else "main"
        rules: dict[str, Protection | None] = {}
        missing: set[str] = set()
        for alias, branch in [(_ALIAS, name), *((f"{_ALIAS}{i}", b)
                                                for i, b in enumerate(_listed(needs)))]:
            found = node.get(alias)
            if not isinstance(found, dict):
                missing.add(branch)
                continue
            rule = found.get("branchProtectionRule")
            rules[branch] = parse_graphql_rule(rule) if isinstance(rule, dict) else None
        return _Classic(name, rules, frozenset(missing - set(rules)), unreadable)

    def parse(self, node: Mapping[str, Any], needs: Needs) -> _Classic:
        return self._parse(node, needs, None)

    def parse_errors(self, node: Mapping[str, Any], needs: Needs,
                     errors: Sequence[Mapping[str, Any]]) -> _Classic:
        # Classic protection refused (the App lacks "Administration: read"): the rulesets
        # are still read, and may meet a requirement on their own.
        return self._parse(node, needs, "the App may not read branch protection ("
                           + "; ".join(str(e.get("message")) for e in errors)
                           + "): grant it \"Administration: read\"")

    async def complete(self, reader: Reader, repo: RepoRef, view: Any, needs: Needs
                       ) -> AllBranchRules | Unreadable:
        classic = view if isinstance(view, _Classic) else _Classic(
            repo.default_branch, {}, frozenset())
        out: dict[str, BranchRules] = {}
        for branch in [classic.default_branch, *_listed(needs)]:
            if branch in out:
                continue
            if branch in classic.missing:
                out[branch] = BranchRules(branch, None, None, exists=False)
                continue
            b = quote(branch, safe="")
            status, rules = await reader.get_all(f"rules/branches/{b}?per_page=100",
                                                 expect=(403, 404))
            if status == 403:
                return Unreadable("GitHub refused to list the rulesets (403)")
            combined, sources = parse_rules(rules)
            out[branch] = BranchRules(branch=branch, classic=classic.rules.get(branch),
                                      rulesets=combined, sources=sources,
                                      classic_unreadable=classic.unreadable)
        return AllBranchRules(out, classic.default_branch)


SOURCE = BranchRulesSource()
