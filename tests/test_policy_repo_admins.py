"""repo_admins: admin rights go through teams, not individual people."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies import REGISTRY
from app.policies.base import DOCS_URL, RepoSnapshot, SourceUnreadable
from app.policies.repo_admins import POLICY, RepoAdminsParams
from app.sources.base import Unreadable
from app.sources.collaborators import Access, Person, Team


def snap(people: tuple[Person, ...] = (), teams: tuple[Team, ...] = ()) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"collaborators": Access(people, teams)})


def params(**values: Any) -> RepoAdminsParams:
    return RepoAdminsParams.model_validate(values)


ADMIN_TEAM = Team("platform", "admin")


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["repo_admins"] is POLICY
    example = RepoAdminsParams.model_validate(POLICY.example)
    assert POLICY.needs_for(example).sources == {"collaborators"}


def test_an_admin_team_and_no_individual_admin_passes() -> None:
    people = (Person("dev", "write", outside=False), Person("lead", "maintain", outside=False))
    result = POLICY.evaluate(snap(people, (ADMIN_TEAM, Team("devs", "write"))))
    assert result.passed and "\n" not in result.message
    assert result.details["admin_teams"] == ["platform"]
    assert result.details["individual_admin_count"] == 0


def test_no_admin_team_fails() -> None:
    result = POLICY.evaluate(snap(teams=(Team("devs", "maintain"),)))
    assert not result.passed
    assert "0 teams with admin permission (none); at least 1 required" in result.message
    assert "Admin** role" in result.message and "individual admin" not in result.message
    assert result.message.endswith(f"See {DOCS_URL}#repo_admins.")


def test_individual_admins_fail_and_are_listed_sorted() -> None:
    people = (Person("zed", "admin", outside=False), Person("Amy", "admin", outside=True),
              Person("dev", "write", outside=False))
    result = POLICY.evaluate(snap(people, (ADMIN_TEAM,)))
    assert not result.passed
    assert "2 individual admins (`Amy`, `zed`); at most 0 allowed" in result.message
    assert "Remove their individual admin rights" in result.message
    assert "teams with admin" not in result.message
    assert result.details["individual_admins"] == ["Amy", "zed"]


def test_both_problems_are_reported() -> None:
    result = POLICY.evaluate(snap((Person("zed", "admin", outside=False),)))
    assert not result.passed
    assert "at least 1 required" in result.message and "at most 0 allowed" in result.message


def test_limits_are_configurable() -> None:
    people = (Person("a", "admin", outside=False), Person("b", "admin", outside=False))
    assert POLICY.evaluate(snap(people), params(min_admin_teams=0,
                                                max_individual_admins=2)).passed
    failed = POLICY.evaluate(snap(people, (ADMIN_TEAM,)), params(min_admin_teams=2,
                                                                 max_individual_admins=2))
    assert not failed.passed and "at least 2 required" in failed.message


def test_allowed_logins_do_not_count() -> None:
    people = (Person("Break-Glass", "admin", outside=False),)
    assert POLICY.evaluate(snap(people, (ADMIN_TEAM,)), params(allow=["break-glass"])).passed
    assert not POLICY.evaluate(snap(people, (ADMIN_TEAM,)), params(allow=["other"])).passed


def test_long_lists_are_capped() -> None:
    people = tuple(Person(f"u{i:02d}", "admin", outside=False) for i in range(30))
    result = POLICY.evaluate(snap(people, (ADMIN_TEAM,)))
    assert not result.passed
    assert len(result.details["individual_admins"]) == 20
    assert result.details["individual_admin_count"] == 30
    assert "`u19` and 10 more" in result.message and "u20" not in result.message


def test_unreadable_source_is_unknown() -> None:
    snapshot = RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                            data={"collaborators": Unreadable("refused (403)")})
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(snapshot)
    result = POLICY.judge(snapshot, params())
    assert result.unknown and "refused (403)" in result.message


@pytest.mark.parametrize(("values", "fragment"), [
    ({"min_admin_teams": -1}, "greater than or equal to 0"),
    ({"max_individual_admins": "2"}, "valid integer"),
    ({"max_individual_admins": 1.5}, "valid integer"),
    ({"allow": [""]}, "blank login"),
    ({"min_teams": 1}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RepoAdminsParams.model_validate(values)


CONFIG = """\
policies:
  - name: Team admins
    type: repo_admins
    action: create-issue
    params:
      min_admin_teams: 1
      max_individual_admins: {value}
"""


def test_config_params_and_errors_with_their_line() -> None:
    (entry,) = parse_config(CONFIG.format(value="1")).policies
    assert entry.params == params(max_individual_admins=1)
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(value="-3"))
    assert "config.yaml:7:" in str(info.value) and "max_individual_admins" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(value="0").replace("min_admin_teams", "min_admin_team"))
    assert "config.yaml:6:" in str(info.value) and "min_admin_teams" in str(info.value)
