"""outside_collaborators: no outside collaborator at or above a forbidden permission."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies import REGISTRY
from app.policies.base import DOCS_URL, RepoSnapshot, SourceUnreadable
from app.policies.outside_collaborators import POLICY, OutsideCollaboratorsParams
from app.sources.base import Unreadable
from app.sources.collaborators import Access, Person, Team


def snap(*people: Person, teams: tuple[Team, ...] = ()) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"collaborators": Access(people, teams)})


def params(**values: Any) -> OutsideCollaboratorsParams:
    return OutsideCollaboratorsParams.model_validate(values)


def outside(login: str, permission: str) -> Person:
    return Person(login, permission, outside=True)


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["outside_collaborators"] is POLICY
    example = OutsideCollaboratorsParams.model_validate(POLICY.example)
    assert POLICY.needs_for(example).sources == {"collaborators"}


def test_default_forbids_outside_admins_only() -> None:
    ok = snap(outside("contractor", "maintain"), Person("boss", "admin", outside=False),
              teams=(Team("core", "admin"),))
    result = POLICY.evaluate(ok)
    assert result.passed and "`admin`" in result.message
    failed = POLICY.evaluate(snap(outside("contractor", "admin")))
    assert not failed.passed
    assert "- `contractor`: `admin`" in failed.message
    assert failed.details == {"forbidden_permission": "admin", "count": 1,
                              "offenders": [{"login": "contractor", "permission": "admin"}]}


def test_permission_or_higher_is_a_violation() -> None:
    people = (outside("a", "read"), outside("b", "triage"), outside("c", "write"),
              outside("d", "maintain"), outside("e", "admin"))
    result = POLICY.evaluate(snap(*people), params(forbidden_permission="write"))
    assert not result.passed
    assert [o["login"] for o in result.details["offenders"]] == ["c", "d", "e"]
    assert "`write` permission or higher" in result.message
    assert "lower their permission to `triage` or less" in result.message
    assert "Settings → Collaborators and teams" in result.message
    assert "make them members" in result.message
    assert result.message.endswith(f"See {DOCS_URL}#outside_collaborators.")


def test_push_is_the_legacy_name_for_write() -> None:
    result = POLICY.evaluate(snap(outside("c", "write")), params(forbidden_permission="push"))
    assert not result.passed and result.details["forbidden_permission"] == "write"


def test_read_forbids_any_access() -> None:
    result = POLICY.evaluate(snap(outside("a", "read")), params(forbidden_permission="read"))
    assert not result.passed and "remove their access" in result.message


def test_allow_list_is_case_insensitive() -> None:
    people = (outside("Release-Bot", "admin"), outside("mallory", "admin"))
    result = POLICY.evaluate(snap(*people), params(allow=["release-bot"]))
    assert not result.passed
    assert result.details["offenders"] == [{"login": "mallory", "permission": "admin"}]
    assert "Release-Bot" not in result.message
    assert POLICY.evaluate(snap(*people), params(allow=["RELEASE-BOT", "Mallory"])).passed


def test_members_are_never_offenders() -> None:
    result = POLICY.evaluate(snap(Person("owner", "admin", outside=False)),
                             params(forbidden_permission="read"))
    assert result.passed


def test_offenders_sorted_and_capped() -> None:
    people = [outside(f"user{i:02d}", "admin") for i in reversed(range(25))]
    people.append(outside("Alice", "admin"))
    result = POLICY.evaluate(snap(*people))
    assert not result.passed
    logins = [o["login"] for o in result.details["offenders"]]
    assert len(logins) == 20 and logins[0] == "Alice" and logins[1] == "user00"
    assert result.details["count"] == 26
    assert "26 outside collaborators" in result.message
    assert "- … and 6 more" in result.message
    assert "user19" not in result.message
    # Re-scans of the same data give the same text (no churn in issues).
    assert result == POLICY.evaluate(snap(*reversed(people)))


def test_unreadable_source_is_unknown() -> None:
    snapshot = RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                            data={"collaborators": Unreadable("refused (403)")})
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(snapshot)
    result = POLICY.judge(snapshot, params())
    assert result.unknown and "refused (403)" in result.message


@pytest.mark.parametrize(("values", "fragment"), [
    ({"forbidden_permission": "owner"}, "'read', 'triage', 'write', 'push', 'maintain'"),
    ({"allow": ["ok", "  "]}, "blank login"),
    ({"allow": "someone"}, "valid tuple"),
    ({"allowed": ["x"]}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        OutsideCollaboratorsParams.model_validate(values)


def test_params_are_normalized() -> None:
    assert params(allow=["B", " a", "b"]).allow == ("a", "b")


CONFIG = """\
policies:
  - name: No outside admins
    type: outside_collaborators
    action: create-issue
    params:
      forbidden_permission: {value}
      allow: [release-bot]
"""


def test_config_params_and_errors_with_their_line() -> None:
    (entry,) = parse_config(CONFIG.format(value="maintain")).policies
    assert entry.params == params(forbidden_permission="maintain", allow=["release-bot"])
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(value="owner"))
    assert "config.yaml:6:" in str(info.value) and "forbidden_permission" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(value="admin").replace("allow:", "allowed:"))
    assert "config.yaml:7:" in str(info.value) and "'allow'" in str(info.value)
