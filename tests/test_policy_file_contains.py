"""file_contains: a pattern in a file's text, or a value in its YAML or JSON."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from app.config.loader import ConfigError, parse_config
from app.policies import REGISTRY, RepoSnapshot
from app.policies.base import DOCS_URL, Result
from app.policies.base import inline_code as code
from app.policies.file_contains import POLICY, FileContainsParams

SEE = f"See {DOCS_URL}#file_contains."


def snap(path: str, text: str | None, too_large: int | None = None) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main", files={path: text},
                        too_large={} if too_large is None else {path: too_large})


def params(**values: object) -> FileContainsParams:
    return FileContainsParams.model_validate(values)


def run(text: str | None, path: str = "f.yaml", **values: object) -> Result:
    return POLICY.evaluate(snap(path, text), params(path=path, **values))


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["file_contains"] is POLICY
    example = FileContainsParams.model_validate(POLICY.example)
    assert POLICY.needs_for(example).files == frozenset({"catalog-info.yaml"})


# -- pattern ----------------------------------------------------------------------------


def test_pattern_found_anywhere_passes() -> None:
    assert run("# Title\n\nLicensed under Apache-2.0\n", "README.md",
               pattern=r"Apache-2\.0").passed


def test_pattern_not_found_fails_naming_it() -> None:
    result = run("# Title\n", "README.md", pattern=r"## Security")
    assert not result.passed
    assert "`README.md` in `acme/api` has no text matching the pattern `## Security`" in \
        result.message
    assert "(`main`)" in result.message and result.message.endswith(SEE)
    assert result.details == {"path": "README.md", "pattern": "## Security"}


def test_multiline_anchors_match_at_every_line() -> None:
    text = "name: x\nversion: 2\n"
    assert not run(text, "m.txt", pattern=r"^version: \d+$").passed
    assert run(text, "m.txt", pattern=r"^version: \d+$", multiline=True).passed


def test_patterns_run_in_linear_time() -> None:
    # Catastrophic for a backtracking engine; RE2 answers at once.
    started = time.monotonic()
    result = run("a" * 100_000 + "!", "x.txt", pattern=r"^(a+)+$")
    assert not result.passed
    assert time.monotonic() - started < 2


def test_a_binary_file_is_empty_text() -> None:
    assert not run("", "logo.png", pattern="PNG").passed
    assert run("", "logo.png", pattern="^").passed


def test_a_pattern_with_backticks_is_quoted_whole() -> None:
    result = run("x", "README.md", pattern="`make test`")
    assert "`` `make test` ``" in result.message
    assert code("a``b") == "```a``b```"
    assert code("@acme/team") == "`@acme/team`"


# -- missing and unreadable files ------------------------------------------------------


def test_a_missing_file_fails_by_default_and_says_what_to_add() -> None:
    result = run(None, "catalog-info.yaml", yaml_path="spec.owner")
    assert not result.passed
    assert "has no `catalog-info.yaml`" in result.message
    assert "a non-empty value at `spec.owner`" in result.message
    assert result.details == {"path": "catalog-info.yaml", "missing": True}


def test_a_missing_file_may_pass() -> None:
    result = run(None, "package.json", json_path="license", missing="pass")
    assert result.passed and "does not exist" in result.message


def test_a_file_too_large_is_not_read() -> None:
    result = POLICY.evaluate(snap("big.yaml", "", too_large=3 << 20),
                             params(path="big.yaml", pattern="x"))
    assert not result.passed
    assert "is 3 MB; the limit is 1 MB, so it was not read" in result.message
    assert result.details["size"] == 3 << 20


def test_unreadable_yaml_gives_the_parsers_reason() -> None:
    result = run("spec: [unclosed\n", yaml_path="spec")
    assert not result.passed
    assert "not valid YAML: f.yaml:2:1:" in result.message
    assert result.details["error"].startswith("it is not valid YAML")


def test_yaml_beyond_the_bounds_is_unreadable() -> None:
    result = run("[" * 100 + "]" * 100, yaml_path="a")
    assert not result.passed and "nests more than 64 levels" in result.message


def test_unreadable_json_gives_line_and_column() -> None:
    result = run('{\n  "a": 1,\n}\n', "p.json", json_path="a")
    assert not result.passed
    assert "not valid JSON: p.json:3:1: Expecting property name" in result.message


def test_json_nested_too_deeply_is_unreadable() -> None:
    result = run("[" * 100_000, "p.json", json_path="a")
    assert not result.passed and "nested too deeply" in result.message


def test_an_empty_yaml_file_fails() -> None:
    result = run("# only a comment\n", yaml_path="spec.owner")
    assert not result.passed and "is empty" in result.message


# -- values ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "check", "passed"), [
    ("spec:\n  owner: team-a\n", {}, True),
    ("spec:\n  owner: '  '\n", {}, False),
    ("spec:\n  owner: []\n", {}, False),
    ("spec:\n  owner: false\n", {}, True),
    ("spec: {}\n", {}, False),
    ("spec:\n  owner: team-a\n", {"equals": "team-a"}, True),
    ("spec:\n  owner: team-b\n", {"equals": "team-a"}, False),
    ("spec:\n  owner: 1\n", {"equals": True}, False),
    ("spec:\n  owner: true\n", {"equals": 1}, False),
    ("spec:\n  owner: 1\n", {"equals": 1.0}, True),
    ("spec:\n  owner: null\n", {"equals": None}, True),
    ("spec:\n  owner: [a, b]\n", {"equals": ["a", "b"]}, True),
    ("spec:\n  owner: {a: 1}\n", {"equals": {"a": 1}}, True),
    ("spec:\n  owner: {a: 1, b: 2}\n", {"equals": {"a": 1}}, False),
    ("spec:\n  owner: 2024-01-31\n", {"equals": "2024-01-31"}, True),
    ("spec:\n  owner: b\n", {"one_of": ["a", "b"]}, True),
    ("spec:\n  owner: c\n", {"one_of": ["a", "b"]}, False),
    ("spec:\n  owner: team-a\n", {"non_empty": True}, True),
])
def test_yaml_values(text: str, check: dict[str, Any], passed: bool) -> None:
    assert run(text, yaml_path="spec.owner", **check).passed is passed


def test_a_wrong_value_is_shown_with_what_is_wanted() -> None:
    result = run("spec:\n  lifecycle: experimental\n", "catalog-info.yaml",
                 yaml_path="spec.lifecycle", one_of=["production", "deprecated"])
    assert not result.passed
    assert ("must have `spec.lifecycle` equal to one of `\"production\"`, `\"deprecated\"`, "
            "but it is `\"experimental\"`") in result.message
    assert result.message.endswith(SEE)
    assert result.details["failures"] == [{"document": 1, "found": 'is `"experimental"`'}]


def test_a_missing_value_says_so() -> None:
    result = run("spec: {}\n", yaml_path="spec.owner", equals="a")
    assert "but it is missing or null" in result.message


def test_long_values_are_cut() -> None:
    result = run("spec:\n  owner: " + "x" * 500 + "\n", yaml_path="spec.owner", equals="a")
    # 80 characters of JSON: the opening quote and 79 of the value.
    assert '`"' + "x" * 79 + "…`" in result.message and "x" * 80 not in result.message


def test_every_yaml_document_must_pass_and_failures_name_the_documents() -> None:
    text = ("spec:\n  owner: a\n---\n---\nspec:\n  type: library\n---\n"
            "spec:\n  owner: b\n---\nspec:\n  owner: ''\n")
    result = run(text, yaml_path="spec.owner")
    assert not result.passed
    # Numbered as in the file: the empty second document counts.
    assert "in document 3 it is missing or null; in document 5 it is `\"\"`" in \
        result.message
    assert [f["document"] for f in result.details["failures"]] == [3, 5]
    assert run("spec:\n  owner: a\n---\nspec:\n  owner: b\n", yaml_path="spec.owner").passed


def test_json_values() -> None:
    text = '\ufeff{"license": "MIT", "engines": {"node": ">=20"}}'
    assert run(text, "package.json", json_path="license", one_of=["MIT", "Apache-2.0"]).passed
    assert run(text, "package.json", json_path="engines.node").passed
    failed = run(text, "package.json", json_path="private", equals=True)
    assert not failed.passed and "missing or null" in failed.message
    assert "document" not in failed.message


def test_jmespath_functions_and_filters() -> None:
    text = "spec:\n  tags: [a, b]\n"
    assert run(text, yaml_path="contains(spec.tags, 'b')", equals=True).passed
    assert run(text, yaml_path="length(spec.tags)", equals=2).passed


def test_an_expression_the_data_does_not_fit_is_a_violation() -> None:
    result = run("spec: 3\n", yaml_path="length(spec)", equals=1)
    assert not result.passed
    assert "it cannot be evaluated (In function length(), invalid type" in result.message


# -- params ------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "fragment"), [
    ({"path": "a"}, "exactly one of `pattern`, `yaml_path` or `json_path`"),
    ({"path": "a", "pattern": "x", "yaml_path": "a"}, "(got pattern, yaml_path)"),
    ({"path": "a", "pattern": ""}, "must not be empty"),
    ({"path": "a", "pattern": r"(a)\1"}, "invalid RE2 pattern"),
    ({"path": "a", "pattern": r"(?<=a)b"}, "no look-around"),
    ({"path": "a", "pattern": "(a"}, "missing )"),
    ({"path": "a", "yaml_path": "a", "multiline": True}, "multiline applies to `pattern`"),
    ({"path": "a", "pattern": "x", "equals": 1}, "equals applies to"),
    ({"path": "a", "yaml_path": "a", "equals": 1, "one_of": [1]}, "only one of equals, one_of"),
    ({"path": "a", "yaml_path": "a", "one_of": []}, "at least 1 item"),
    ({"path": "a", "yaml_path": "a", "non_empty": False}, "checks nothing"),
    ({"path": "a", "yaml_path": "a", "equals": {1, 2}}, "must be a JSON value"),
    ({"path": "a", "yaml_path": "spec.["}, "invalid JMESPath expression 'spec.['"),
    ({"path": "a", "json_path": "`bad"}, "Unclosed ` delimiter at position 0"),
    ({"path": "a", "json_path": " "}, "must not be empty"),
    ({"path": "a", "json_path": "nosuch(a)"}, "unknown JMESPath function nosuch()"),
    ({"path": "a", "json_path": "a[?length(a, b)]"}, "length() takes 1 argument(s), got 2"),
    ({"path": "a", "json_path": "merge()"}, "takes at least 1 argument(s), got 0"),
    ({"path": "/a", "pattern": "x"}, "no leading '/'"),
    ({"path": "a", "pattern": "x", "missing": "ignore"}, "'fail' or 'pass'"),
    ({"path": "a", "patern": "x"}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        FileContainsParams.model_validate(values)
    assert fragment in str(info.value)


def test_equals_null_is_a_check_of_its_own() -> None:
    p = params(path="a", yaml_path="x", equals=None)
    assert p.requirement() == "`x` equal to `null`"
    assert params(path="a", yaml_path="x").requirement() == "a non-empty value at `x`"


CONFIG = """\
policies:
  - name: lifecycle
    type: file_contains
    action: log-only
    params:
      path: catalog-info.yaml
      yaml_path: spec.lifecycle
      equals: production
  - name: security
    type: file_contains
    action: log-only
    params:
      path: SECURITY.md
      pattern: '(?i)reporting a vulnerability'
"""


def test_parsed_from_the_config() -> None:
    config = parse_config(CONFIG)
    assert config.policies[0].needs.files == frozenset({"catalog-info.yaml"})
    result = config.policies[1].evaluate(snap("SECURITY.md", "## Reporting a Vulnerability"))
    assert result.passed


@pytest.mark.parametrize(("old", "new", "line", "fragment"), [
    ("spec.lifecycle", "spec.[", 7, "invalid JMESPath expression"),
    ("'(?i)reporting a vulnerability'", "'(?<!x)y'", 14, "invalid RE2 pattern"),
    ("      equals: production\n", "      equals: production\n      one_of: [a]\n", 5,
     "only one of equals, one_of"),
])
def test_a_bad_param_is_reported_at_its_line(old: str, new: str, line: int,
                                             fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace(old, new))
    assert f"config.yaml:{line}:" in str(info.value) and fragment in str(info.value)
