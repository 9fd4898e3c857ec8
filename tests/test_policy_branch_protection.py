"""branch_protection: classic protection or active rulesets meet each requirement."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies import REGISTRY
from app.policies.base import DOCS_URL, RepoSnapshot, SourceUnreadable
from app.policies.base import inline_code as code
from app.policies.branch_protection import POLICY, BranchProtectionParams
from app.sources.base import Unreadable
from app.sources.branch_rules import AllBranchRules, BranchRules, Protection

UNREADABLE = 'the App may not read branch protection (403): grant it "Administration: read"'


def snap(*rules: BranchRules, default: str = "main") -> RepoSnapshot:
    view = AllBranchRules({r.branch: r for r in rules}, default)
    return RepoSnapshot(id=1, full_name="acme/api", default_branch=default,
                        data={"branch_rules": view})


def params(**values: Any) -> BranchProtectionParams:
    return BranchProtectionParams.model_validate(values)


STRICT = Protection(
    required_approving_review_count=2, dismiss_stale_reviews=True,
    require_code_owner_reviews=True, required_status_checks=("ci/test", "lint"),
    enforce_admins=True, blocks_force_pushes=True, blocks_deletions=True,
    required_signatures=True, required_conversation_resolution=True)

EVERYTHING = dict(
    required_approving_review_count=2, dismiss_stale_reviews=True,
    require_code_owner_reviews=True, required_status_checks=["ci/test", "lint"],
    enforce_admins=True, allow_force_pushes=False, allow_deletions=False,
    required_signatures=True, required_conversation_resolution=True)


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["branch_protection"] is POLICY
    example = BranchProtectionParams.model_validate(POLICY.example)
    needs = POLICY.needs_for(example)
    assert needs.sources == {"branch_rules"} and needs.branches == {"main", "release"}
    # Unset branches: only the default branch, which the source always reads.
    assert POLICY.needs_for(params(enforce_admins=True)).branches == frozenset()


def test_classic_protection_meets_everything() -> None:
    result = POLICY.evaluate(snap(BranchRules("main", STRICT, None)), params(**EVERYTHING))
    assert result.passed, result.message
    assert "`main`" in result.message and "\n" not in result.message


def test_rulesets_meet_everything() -> None:
    rules = BranchRules("main", None, STRICT, sources=("Organization:baseline",))
    assert POLICY.evaluate(snap(rules), params(**EVERYTHING)).passed


def test_requirements_are_met_by_either_mechanism() -> None:
    classic = Protection(required_approving_review_count=1, required_status_checks=("ci/test",),
                         blocks_force_pushes=True, blocks_deletions=False)
    rulesets = Protection(required_approving_review_count=2, required_status_checks=("lint",),
                          blocks_deletions=True, enforce_admins=True)
    rules = BranchRules("main", classic, rulesets, sources=("Repository:checks",))
    result = POLICY.evaluate(snap(rules), params(
        required_approving_review_count=2, required_status_checks=["ci/test", "lint"],
        allow_force_pushes=False, allow_deletions=False, enforce_admins=True))
    assert result.passed, result.message


def test_unprotected_branch_fails_with_every_unmet_requirement() -> None:
    result = POLICY.evaluate(snap(BranchRules("main", None, None)), params(**EVERYTHING))
    assert not result.passed
    msg = result.message
    assert "`acme/api`" in msg and "**Branch `main`**" in msg
    for name in EVERYTHING:
        assert f"`{name}`" in msg
    assert "no classic protection; no active ruleset" in msg
    assert "Settings → Branches" in msg and "Settings → Rules → Rulesets" in msg
    assert "active rulesets that apply: none" in msg
    assert msg.endswith(f"See {DOCS_URL}#branch_protection.")
    assert result.details == {"branches": [
        {"branch": "main", "unmet": list(EVERYTHING), "rulesets": []}]}


def test_message_says_what_is_there_now() -> None:
    classic = Protection(required_approving_review_count=1, required_status_checks=("ci/test",))
    rules = BranchRules("main", classic, Protection(), sources=("Repository:base `x`",))
    result = POLICY.evaluate(snap(rules), params(required_approving_review_count=2,
                                                 required_status_checks=["ci/test", "e2e"]))
    assert not result.passed
    assert "at least 2 approving reviews" in result.message
    assert "classic protection: 1 approval; rulesets: pull requests not required" \
        in result.message
    # Only the missing check is asked for; the ruleset name cannot break out of its span.
    assert "before merging: `e2e`; now" in result.message
    assert "`` Repository:base `x` ``" in result.message


def test_fewer_approvals_than_wanted_fails() -> None:
    classic = Protection(required_approving_review_count=1)
    result = POLICY.evaluate(snap(BranchRules("main", classic, None)),
                             params(required_approving_review_count=2))
    assert not result.passed
    assert result.details["branches"][0]["unmet"] == ["required_approving_review_count"]


def test_zero_approvals_still_needs_pull_requests() -> None:
    p = params(required_approving_review_count=0)
    with_prs = Protection(required_approving_review_count=0)
    assert POLICY.evaluate(snap(BranchRules("main", with_prs, None)), p).passed
    failed = POLICY.evaluate(snap(BranchRules("main", Protection(), None)), p)
    assert not failed.passed and "changes go through a pull request" in failed.message


def test_force_pushes_allowed_by_classic_but_blocked_by_a_ruleset() -> None:
    classic = Protection(blocks_force_pushes=False)
    p = params(allow_force_pushes=False)
    failed = POLICY.evaluate(snap(BranchRules("main", classic, None)), p)
    assert not failed.passed
    assert "classic protection: allowed; no active ruleset" in failed.message
    assert "*Block force pushes*" in failed.message
    rulesets = Protection(blocks_force_pushes=True)
    assert POLICY.evaluate(snap(BranchRules("main", classic, rulesets)), p).passed


def test_permissive_values_check_nothing() -> None:
    # allow_*: true and false requirements are not checked: an unprotected branch passes.
    p = params(allow_force_pushes=True, required_signatures=False, enforce_admins=True)
    rules = BranchRules("main", None, Protection(enforce_admins=True), sources=("Repository:a",))
    assert POLICY.evaluate(snap(rules), p).passed


def test_named_branches_are_each_checked() -> None:
    good = BranchRules("main", STRICT, None)
    bad = BranchRules("release/1.x", None, None)
    p = params(branches=["main", "release/1.x"], required_signatures=True)
    result = POLICY.evaluate(snap(good, bad), p)
    assert not result.passed
    assert [b["branch"] for b in result.details["branches"]] == ["release/1.x"]
    assert "**Branch `release/1.x`**" in result.message and "Branch `main`" not in result.message


def test_default_branch_is_checked_when_branches_are_unset() -> None:
    rules = snap(BranchRules("trunk", None, None), BranchRules("main", STRICT, None),
                 default="trunk")
    result = POLICY.evaluate(rules, params(required_signatures=True))
    assert not result.passed and "`trunk`" in result.message


def test_branch_not_fetched_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="declare it"):
        POLICY.evaluate(snap(BranchRules("main", STRICT, None)),
                        params(branches=["dev"], required_signatures=True))


def test_unreadable_classic_protection_makes_an_unmet_requirement_unknown() -> None:
    rules = BranchRules("main", None, Protection(blocks_deletions=True),
                        sources=("Repository:a",), classic_unreadable=UNREADABLE)
    p = params(required_signatures=True)
    with pytest.raises(SourceUnreadable, match="Administration: read"):
        POLICY.evaluate(snap(rules), p)
    judged = POLICY.judge(snap(rules), p)
    assert judged.unknown and judged.passed and "main" in judged.details["unreadable"]


def test_unreadable_classic_protection_is_fine_when_rulesets_meet_it() -> None:
    rules = BranchRules("main", None, Protection(blocks_deletions=True),
                        sources=("Repository:a",), classic_unreadable=UNREADABLE)
    result = POLICY.judge(snap(rules), params(allow_deletions=False))
    assert result.passed and not result.unknown


def test_unreadable_source_is_unknown() -> None:
    snapshot = RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                            data={"branch_rules": Unreadable("rulesets refused (403)")})
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(snapshot, params(required_signatures=True))
    result = POLICY.judge(snapshot, params(required_signatures=True))
    assert result.unknown and "rulesets refused (403)" in result.message


def test_messages_are_deterministic() -> None:
    rules = BranchRules("main", Protection(required_status_checks=("b", "a")), None,
                        sources=("Repository:z", "Organization:y"))
    p = params(required_status_checks=["c", "d"])
    first = POLICY.evaluate(snap(rules), p)
    assert first == POLICY.evaluate(snap(rules), p)
    assert "classic protection: `a`, `b`" in first.message


def test_code_spans_hold_any_text() -> None:
    assert code("ci/test") == "`ci/test`"
    assert code("a``b") == "```a``b```"
    assert code("`x") == "`` `x ``"
    assert code("line\n@org/team") == "`line @org/team`"


@pytest.mark.parametrize(("values", "fragment"), [
    ({}, "no requirement is set"),
    ({"allow_deletions": True, "dismiss_stale_reviews": False}, "no requirement is set"),
    ({"required_approving_review_count": 7}, "less than or equal to 6"),
    ({"required_approving_review_count": -1}, "greater than or equal to 0"),
    ({"required_approving_review_count": True}, "valid integer"),
    ({"enforce_admins": "yes"}, "valid boolean"),
    ({"branches": [], "enforce_admins": True}, "list of branches is empty"),
    ({"branches": ["main", " "], "enforce_admins": True}, "blank entry"),
    ({"branches": [f"b{i}" for i in range(21)], "enforce_admins": True}, "at most 20"),
    ({"required_status_checks": []}, "list of status checks is empty"),
    ({"require_signatures": True}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        BranchProtectionParams.model_validate(values)


def test_params_are_normalized() -> None:
    p = params(branches=[" main", "main", "dev"], required_status_checks=["ci", "ci "])
    assert p.branches == ("main", "dev") and p.required_status_checks == ("ci",)


CONFIG = """\
policies:
  - name: Protected main
    type: branch_protection
    action: create-issue
    params:
      branches: [main]
      required_approving_review_count: {count}
      allow_force_pushes: false
"""


def test_config_accepts_params_and_reports_bad_ones_with_their_line() -> None:
    config = parse_config(CONFIG.format(count=2))
    (entry,) = config.policies
    assert entry.params == params(branches=["main"], required_approving_review_count=2,
                                  allow_force_pushes=False)
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(count=9))
    assert "config.yaml:7:" in str(info.value)
    assert "required_approving_review_count" in str(info.value)


def test_config_reports_a_misspelt_param() -> None:
    text = CONFIG.format(count=1).replace("allow_force_pushes", "allow_force_push")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:8:" in str(info.value) and "allow_force_pushes" in str(info.value)
