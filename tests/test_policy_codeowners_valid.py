"""codeowners_valid: a CODEOWNERS file exists, and GitHub finds no errors in it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config.loader import ConfigError, parse_config
from app.policies import REGISTRY, RepoSnapshot
from app.policies.base import DOCS_URL, NO_PARAMS, SourceUnreadable
from app.policies.codeowners_valid import POLICY
from app.sources.base import Unreadable
from app.sources.codeowners import Codeowners, CodeownersError


def snap(view: Codeowners | Unreadable) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"codeowners": view})


def unknown_owner(line: int, owner: str = "@acme/ghosts") -> CodeownersError:
    return CodeownersError(line, "Unknown owner",
                           f"Unknown owner on line {line}: make sure {owner} exists and has "
                           f"write access to the repository\n\n  * {owner}\n    ^")


def test_registered_and_needs_the_codeowners_source() -> None:
    assert REGISTRY["codeowners_valid"] is POLICY
    assert POLICY.needs_for(NO_PARAMS).sources == frozenset({"codeowners"})
    assert POLICY.needs_for(NO_PARAMS).files == frozenset()


def test_a_valid_file_passes() -> None:
    result = POLICY.evaluate(snap(Codeowners(".github/CODEOWNERS")))
    assert result.passed and "`.github/CODEOWNERS` is valid" in result.message


def test_no_file_fails_with_where_and_an_example_line() -> None:
    result = POLICY.evaluate(snap(Codeowners(None)))
    assert not result.passed
    assert "`acme/api` has no CODEOWNERS file" in result.message
    assert "`.github/CODEOWNERS`, `CODEOWNERS`, `docs/CODEOWNERS`" in result.message
    assert "`* @acme/your-team`" in result.message
    assert result.message.endswith(f"See {DOCS_URL}#codeowners_valid.")


def test_errors_are_listed_by_line_with_their_messages() -> None:
    errors = (unknown_owner(7), CodeownersError(2, "Invalid pattern",
                                                "Invalid pattern on line 2: `[z-a]`"),
              unknown_owner(4, "@octocat"))
    result = POLICY.evaluate(snap(Codeowners("docs/CODEOWNERS", errors)))
    assert not result.passed
    assert "GitHub finds 3 errors in `docs/CODEOWNERS` of `acme/api`" in result.message
    lines = [line for line in result.message.splitlines() if line.startswith("- ")]
    assert lines == [
        "- line 2: `Invalid pattern on line 2: '[z-a]'`",
        "- line 4: `Unknown owner on line 4: make sure @octocat exists and has write access "
        "to the repository`",
        "- line 7: `Unknown owner on line 7: make sure @acme/ghosts exists and has write "
        "access to the repository`",
    ]
    assert [e["line"] for e in result.details["errors"]] == [2, 4, 7]
    assert result.details["count"] == 3
    assert result.message.endswith(f"See {DOCS_URL}#codeowners_valid.")


def test_one_error_without_a_line() -> None:
    result = POLICY.evaluate(snap(Codeowners("CODEOWNERS", (CodeownersError(0, "x", ""),))))
    assert "GitHub finds 1 error in" in result.message
    assert "- (no message)" in result.message


def test_at_most_twenty_errors_are_listed() -> None:
    errors = tuple(unknown_owner(line) for line in range(30, 0, -1))
    result = POLICY.evaluate(snap(Codeowners("CODEOWNERS", errors)))
    assert "- line 1:" in result.message and "- line 20:" in result.message
    assert "- line 21:" not in result.message and "- and 10 more" in result.message
    assert len(result.details["errors"]) == 20 and result.details["count"] == 30
    assert result == POLICY.evaluate(snap(Codeowners("CODEOWNERS", errors[::-1])))


def test_unreadable_errors_are_unknown() -> None:
    refused = snap(Unreadable("GitHub refused to list the CODEOWNERS errors (403)"))
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(refused)
    result = POLICY.judge(refused, NO_PARAMS)
    assert result.unknown and "403" in result.message


def test_takes_no_params() -> None:
    with pytest.raises(ValidationError):
        POLICY.Params.model_validate({"path": "CODEOWNERS"})
    text = ("policies:\n"
            "  - name: owners\n"
            "    type: codeowners_valid\n"
            "    action: create-issue\n"
            "    params:\n"
            "      strict: true\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:6:" in str(info.value) and "unknown key 'strict'" in str(info.value)
    parsed = parse_config(text.replace("    params:\n      strict: true\n", ""))
    assert parsed.policies[0].needs.sources == frozenset({"codeowners"})
