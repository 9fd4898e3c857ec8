"""stale_repository: the last push is within `max_days_inactive` days of the scan."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from pydantic import ValidationError

from app.config.loader import ConfigError, parse_config
from app.policies import REGISTRY, RepoSnapshot
from app.policies.base import DOCS_URL, SourceUnreadable
from app.policies.stale_repository import POLICY, StaleRepositoryParams
from app.sources.base import Unreadable
from app.sources.settings import RepoSettings

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC).timestamp()
SETTINGS = RepoSettings(
    visibility="private", default_branch="main", description=None, topics=(),
    has_issues=True, has_wiki=False, has_projects=False, delete_branch_on_merge=True,
    allow_merge_commit=False, allow_squash_merge=True, allow_rebase_merge=True,
    pushed_at="2025-05-01T12:00:00Z")


def snap(pushed_at: str | None = "2025-05-01T12:00:00Z", *, archived: bool = False,
         taken_at: float = NOW) -> RepoSnapshot:
    view = replace(SETTINGS, pushed_at=pushed_at)
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main", archived=archived,
                        data={"settings": view}, taken_at=taken_at)


def days(n: int) -> StaleRepositoryParams:
    return StaleRepositoryParams(max_days_inactive=n)


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["stale_repository"] is POLICY
    example = POLICY.Params.model_validate(POLICY.example)
    assert POLICY.needs_for(example).sources == frozenset({"settings"})


def test_defaults_to_a_year() -> None:
    assert StaleRepositoryParams().max_days_inactive == 365
    assert POLICY.evaluate(snap("2024-06-02T12:00:00Z")).passed
    assert not POLICY.evaluate(snap("2024-05-31T12:00:00Z")).passed


def test_a_recent_push_passes() -> None:
    result = POLICY.evaluate(snap(), days(90))
    assert result.passed and result.message == "Last pushed 31 days ago, on 2025-05-01."


def test_an_old_push_fails_with_the_date_and_the_limit() -> None:
    result = POLICY.evaluate(snap("2023-01-15T08:30:00Z"), days(180))
    assert not result.passed
    assert "`acme/api` has had no push since 2023-01-15, more than 180 days ago" in \
        result.message
    assert "archive it (the `archive-repo` action" in result.message
    assert "push to it" in result.message
    assert result.message.endswith(f"See {DOCS_URL}#stale_repository.")
    assert result.details == {"pushed_at": "2023-01-15T08:30:00+00:00",
                              "max_days_inactive": 180}


def test_the_message_does_not_change_from_day_to_day() -> None:
    # A changed message rewrites the issue: the day count must not be in it.
    first = POLICY.evaluate(snap("2023-01-15T08:30:00Z"), days(180))
    later = POLICY.evaluate(snap("2023-01-15T08:30:00Z", taken_at=NOW + 30 * 86400), days(180))
    assert first == later


def test_the_limit_itself_is_not_stale() -> None:
    limit = dt.datetime.fromtimestamp(NOW - 30 * 86400, dt.UTC).isoformat()
    assert POLICY.evaluate(snap(limit), days(30)).passed
    assert not POLICY.evaluate(snap(limit, taken_at=NOW + 1), days(30)).passed


def test_a_repository_never_pushed_to_fails() -> None:
    result = POLICY.evaluate(snap(None), days(30))
    assert not result.passed and "has never been pushed to" in result.message
    assert result.details["pushed_at"] is None


@pytest.mark.parametrize("stamp", ["2025-05-01T12:00:00Z", "2025-05-01T12:00:00",
                                   "2025-05-01T14:00:00+02:00"])
def test_iso_8601_forms(stamp: str) -> None:
    assert POLICY.evaluate(snap(stamp), days(31)).passed
    assert not POLICY.evaluate(snap(stamp), days(30)).passed


def test_an_archived_repository_passes() -> None:
    assert POLICY.evaluate(snap("2001-01-01T00:00:00Z", archived=True), days(30)).passed


def test_unreadable_data_is_unknown() -> None:
    garbled = POLICY.judge(snap("yesterday"), days(30))
    assert garbled.unknown and "not ISO 8601" in garbled.message
    refused = RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                           data={"settings": Unreadable("no access")}, taken_at=NOW)
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(refused, days(30))
    assert POLICY.judge(refused, days(30)).unknown


@pytest.mark.parametrize(("values", "fragment"), [
    ({"max_days_inactive": 0}, "greater than or equal to 1"),
    ({"max_days_inactive": 100_000}, "less than or equal to 36500"),
    ({"max_days_inactive": "soon"}, "valid integer"),
    ({"max_days": 30}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        StaleRepositoryParams.model_validate(values)
    assert fragment in str(info.value)


CONFIG = """\
policies:
  - name: stale
    type: stale_repository
    action: [create-issue, archive-repo]
    params:
      max_days_inactive: 180
"""


def test_parsed_from_the_config() -> None:
    config = parse_config(CONFIG)
    assert config.policies[0].evaluate(snap("2020-01-01T00:00:00Z")).passed is False
    assert parse_config(CONFIG.replace("    params:\n      max_days_inactive: 180\n", ""))


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ("max_days_inactive: 180", "max_days_inactive: 0", "greater than or equal to 1"),
    ("max_days_inactive: 180", "max_inactive_days: 180", "did you mean 'max_days_inactive'"),
])
def test_a_bad_param_is_reported_at_its_line(old: str, new: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace(old, new))
    assert "config.yaml:6:" in str(info.value) and fragment in str(info.value)
