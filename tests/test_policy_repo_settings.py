"""repo_settings: repository settings compared with the policy's wanted values."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from app.config.loader import ConfigError, parse_config
from app.policies import REGISTRY, RepoSnapshot
from app.policies.base import DOCS_URL, SourceUnreadable
from app.policies.repo_settings import POLICY, RepoSettingsParams
from app.sources.base import Unreadable
from app.sources.settings import RepoSettings

SETTINGS = RepoSettings(
    visibility="private", default_branch="main", description="The API",
    topics=("team-platform", "python"), has_issues=True, has_wiki=False, has_projects=False,
    delete_branch_on_merge=True, allow_merge_commit=False, allow_squash_merge=True,
    allow_rebase_merge=True, pushed_at="2024-05-01T12:00:00Z")


def snap(view: RepoSettings | Unreadable = SETTINGS) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"settings": view})


def params(**values: object) -> RepoSettingsParams:
    return RepoSettingsParams.model_validate(values)


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["repo_settings"] is POLICY
    example = RepoSettingsParams.model_validate(POLICY.example)
    assert POLICY.needs_for(example).sources == frozenset({"settings"})
    assert POLICY.evaluate(snap(), example).passed


def test_matching_settings_pass() -> None:
    p = params(visibility=["private"], default_branch="main", delete_branch_on_merge=True,
               allow_merge_commit=False, allow_squash_merge=True, allow_rebase_merge=True,
               has_wiki=False, has_issues=True, has_projects=False, require_description=True,
               required_topics=["python"])
    result = POLICY.evaluate(snap(), p)
    assert result.passed and "\n" not in result.message


def test_every_difference_is_listed_with_where_to_change_it() -> None:
    p = params(visibility=["internal", "public"], default_branch="trunk",
               allow_merge_commit=True, has_wiki=True, require_description=True,
               required_topics=["team-platform", "zeta", "alpha"])
    view = replace(SETTINGS, description="  ")
    result = POLICY.evaluate(snap(view), p)
    assert not result.passed
    assert "`acme/api` has 6 settings that differ from the policy" in result.message
    lines = [line for line in result.message.splitlines() if line.startswith("- ")]
    assert lines == [
        "- **visibility**: `private` → `internal` or `public`. Change it in Settings → "
        "General → Danger Zone → Change repository visibility.",
        "- **default_branch**: `main` → `trunk`. Change it in Settings → General → Default "
        "branch (create the branch first if needed).",
        "- **allow_merge_commit**: off → on. Change it in Settings → General → Pull Requests "
        "→ **Allow merge commits**.",
        "- **has_wiki**: off → on. Change it in Settings → General → Features → **Wikis**.",
        "- **description**: none → a description. Change it in the ⚙️ next to **About** on "
        "the repository's main page → Description.",
        "- **topics**: missing `alpha`, `zeta`. Change it in the ⚙️ next to **About** on the "
        "repository's main page → Topics.",
    ]
    assert result.message.endswith(f"See {DOCS_URL}#repo_settings.")
    assert list(result.details["differences"]) == [
        "visibility", "default_branch", "allow_merge_commit", "has_wiki", "description",
        "topics"]


def test_one_difference_reads_in_the_singular() -> None:
    result = POLICY.evaluate(snap(), params(delete_branch_on_merge=False))
    assert "has 1 setting that differs" in result.message
    assert result.details == {"differences": {"delete_branch_on_merge": "on → off"}}


@pytest.mark.parametrize(("values", "view", "passed"), [
    ({"visibility": ["private", "internal"]}, {"visibility": "internal"}, True),
    ({"visibility": ["private"]}, {"visibility": "public"}, False),
    ({"require_description": True}, {"description": None}, False),
    ({"require_description": True}, {"description": "x"}, True),
    ({"required_topics": ["python"]}, {"topics": ()}, False),
    ({"has_issues": False}, {"has_issues": True}, False),
    ({"allow_rebase_merge": False}, {"allow_rebase_merge": False}, True),
])
def test_single_settings(values: dict[str, object], view: dict[str, object],
                         passed: bool) -> None:
    result = POLICY.evaluate(snap(replace(SETTINGS, **view)), params(**values))  # type: ignore[arg-type]
    assert result.passed is passed


def test_unreadable_settings_are_unknown() -> None:
    refused = snap(Unreadable("no access"))
    p = params(has_wiki=False)
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(refused, p)
    result = POLICY.judge(refused, p)
    assert result.unknown and "no access" in result.message


@pytest.mark.parametrize(("values", "fragment"), [
    ({}, "give at least one setting to check"),
    ({"require_description": False}, "give at least one setting to check"),
    ({"visibility": []}, "at least 1 item"),
    ({"visibility": ["secret"]}, "'public', 'private' or 'internal'"),
    ({"visibility": ["public", "public"]}, "listed more than once"),
    ({"default_branch": "my branch"}, "no spaces"),
    ({"default_branch": ""}, "no spaces and is not empty"),
    ({"required_topics": ["Python"]}, "topic 'Python' is not a GitHub topic"),
    ({"required_topics": ["-x"]}, "is not a GitHub topic"),
    ({"required_topics": ["a" * 51]}, "is not a GitHub topic"),
    ({"required_topics": ["x", "x"]}, "a topic is listed more than once"),
    ({"has_wiki": "maybe"}, "valid boolean"),
    ({"delete_branch_on_merges": True}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        RepoSettingsParams.model_validate(values)
    assert fragment in str(info.value)


def test_topics_up_to_fifty_characters() -> None:
    assert params(required_topics=["a" * 50, "k8s", "team-a"]).required_topics is not None


CONFIG = """\
policies:
  - name: settings
    type: repo_settings
    action: log-only
    params:
      visibility: [private]
      delete_branch_on_merge: true
      required_topics: [team-platform]
"""


def test_parsed_from_the_config() -> None:
    config = parse_config(CONFIG)
    assert config.policies[0].evaluate(snap()).passed


@pytest.mark.parametrize(("old", "new", "line", "fragment"), [
    ("[team-platform]", "[Team-Platform]", 8, "not a GitHub topic"),
    ("delete_branch_on_merge:", "delete_branches_on_merge:", 7,
     "did you mean 'delete_branch_on_merge'"),
    ("[private]", "[privat]", 6, "'public', 'private' or 'internal'"),
])
def test_a_bad_param_is_reported_at_its_line(old: str, new: str, line: int,
                                             fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace(old, new))
    assert f"config.yaml:{line}:" in str(info.value) and fragment in str(info.value)
