"""expression: custom rules as a JMESPath query over a JSON view of the repository."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies.base import MAX_FILE_BYTES, RepoSnapshot, SourceUnreadable
from app.policies.expression import (
    POLICY,
    VALUE_CHARS,
    ExpressionParams,
    render,
    same,
    truthy,
)
from app.sources.base import Unreadable
from app.sources.branch_rules import AllBranchRules, BranchRules, Protection
from app.sources.settings import RepoSettings
from app.sources.tree import Tree, TreeEntry

CATALOG = "catalog-info.yaml"


def snap(files: dict[str, str | None] | None = None, data: dict[str, Any] | None = None,
         too_large: dict[str, int] | None = None) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        visibility="private", files=files or {}, data=data or {},
                        too_large=too_large or {})


def params(**values: Any) -> ExpressionParams:
    values.setdefault("message", "`{repo}` breaks the rule: {value}.")
    return ExpressionParams.model_validate(values)


SETTINGS = RepoSettings(
    visibility="private", default_branch="main", description=None, topics=("api", "go"),
    has_issues=True, has_wiki=False, has_projects=False, delete_branch_on_merge=True,
    allow_merge_commit=False, allow_squash_merge=True, allow_rebase_merge=False,
    pushed_at="2024-05-01T10:00:00Z")


# -- the documented example -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "passed"), [
    (None, True),  # has_catalog_info_yaml reports a missing file
    ("spec:\n  lifecycle: production\n", True),
    ("---\nspec: {lifecycle: experimental}\n---\nkind: Location\n", True),
    ("---\nmetadata: {name: api}\nspec: {lifecycle: beta}\n---\nspec: {lifecycle: production}\n",
     False),
    ("spec:\n  owner: team-a\n", False),  # no lifecycle at all
])
def test_example_catalog_lifecycle(text: str | None, passed: bool) -> None:
    example = ExpressionParams.model_validate(POLICY.example)
    assert POLICY.needs_for(example).files == frozenset({CATALOG})
    result = POLICY.evaluate(snap({CATALOG: text}), example)
    assert result.passed is passed
    if not passed:
        assert result.message.startswith(f"`{CATALOG}` in `acme/api` has entries")
        assert result.message.endswith("#expression.")


def test_example_message_names_the_offending_entries() -> None:
    text = "metadata: {name: api}\nspec: {lifecycle: beta}\n"
    result = POLICY.evaluate(snap({CATALOG: text}), ExpressionParams.model_validate(
        POLICY.example))
    assert '`[{"name": "api", "lifecycle": "beta"}]`' in result.message
    assert result.details["value"] == '[{"name": "api", "lifecycle": "beta"}]'


# -- the view -------------------------------------------------------------------------------

def test_repository_view() -> None:
    p = params(query="repository", expect={
        "full_name": "acme/api", "default_branch": "main", "visibility": "private",
        "archived": False, "fork": False})
    assert POLICY.evaluate(snap(), p).passed


def test_files_view_yaml_json_missing_and_errors() -> None:
    files: dict[str, str | None] = {
        "a.yaml": "x: 2024-01-02\n1: one\n---\n- y\n",
        "b.JSON": '{"k": [1, true]}',
        "c.yaml": None,
        "d.yaml": "x: [\n",
        "e.json": "{nope}",
        "f.yaml": "",
        "g.json": "[" * 100 + "]" * 100,
        "h.yaml": "",
    }
    p = params(query="files", files=list(files))
    result = POLICY.evaluate(snap(files, too_large={"h.yaml": 2 * MAX_FILE_BYTES}), p)
    got = POLICY.view(snap(files, too_large={"h.yaml": 2 * MAX_FILE_BYTES}), p)["files"]
    assert got["a.yaml"] == {"documents": [{"x": "2024-01-02", "1": "one"}, ["y"]]}
    assert got["b.JSON"] == {"documents": [{"k": [1, True]}]}
    assert got["c.yaml"] is None
    assert got["d.yaml"]["error"].startswith("d.yaml:2:")
    assert got["e.json"]["error"].startswith("e.json:1:2:")
    assert got["f.yaml"] == {"documents": []}
    assert "nests more than" in got["g.json"]["error"]
    assert got["h.yaml"] == {"error": "h.yaml is 2 MB; the limit is 1 MB, so it was not read"}
    assert result.passed  # a non-empty object is truthy


def test_sources_view_as_plain_json() -> None:
    rules = AllBranchRules({"main": BranchRules("main", Protection(
        required_approving_review_count=2, required_status_checks=("ci",)), None)})
    data = {"settings": SETTINGS, "branch_rules": rules,
            "tree": Tree("abc", (TreeEntry("a.py", 3),)),
            "security": Unreadable("the App lacks administration permission")}
    p = params(query="@", sources=["settings", "branch_rules", "tree", "security"])
    assert POLICY.needs_for(p).sources == frozenset(p.sources)
    view = POLICY.view(snap(data=data), p)
    assert view["settings"]["topics"] == ["api", "go"]
    main = view["branch_rules"]["branches"]["main"]
    assert main["classic"]["required_status_checks"] == ["ci"]
    assert main["rulesets"] is None
    assert view["tree"] == {"sha": "abc", "truncated": False,
                            "entries": [{"path": "a.py", "size": 3, "mode": "100644"}]}
    assert view["security"] == {"unreadable": "the App lacks administration permission"}
    rule = params(query="branch_rules.branches.main.classic.required_approving_review_count"
                        " >= `2` && contains(settings.topics, 'api')", sources=[
                            "settings", "branch_rules"])
    assert POLICY.evaluate(snap(data=data), rule).passed


def test_undeclared_source_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="declare it"):
        POLICY.evaluate(snap(), params(query="tree", sources=["tree"]))


def test_unreadable_source_does_not_raise() -> None:
    # The rule sees {"unreadable": ...} and can test for it; judge() is never unknown here.
    p = params(query="security.unreadable", expect=None, sources=["security"])
    result = POLICY.judge(snap(data={"security": Unreadable("403")}), p)
    assert not result.passed and not result.unknown
    assert "`403`" in result.message


def test_source_unreadable_is_exported_for_callers() -> None:
    assert issubclass(SourceUnreadable, Exception)


# -- judging --------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (None, False), (False, False), ("", False), ([], False), ({}, False),
    (0, True), (True, True), ("x", True), ([0], True), ({"a": None}, True),
])
def test_jmespath_truth(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


@pytest.mark.parametrize(("a", "b", "equal"), [
    (1, 1.0, True), (True, 1, False), (1, True, False), (False, False, True),
    ([1, [True]], [1, [True]], True), ([1], [1, 2], False), ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, {"a": True}, False), (None, None, True), ("1", 1, False), (None, False, False),
])
def test_json_equality(a: Any, b: Any, equal: bool) -> None:
    assert same(a, b) is equal


def test_expect_null_differs_from_no_expect() -> None:
    s = snap({"x.yaml": "a: null\n"})
    query = "files.\"x.yaml\".documents[0].a"
    assert not POLICY.evaluate(s, params(query=query, files=["x.yaml"])).passed
    assert POLICY.evaluate(s, params(query=query, files=["x.yaml"], expect=None)).passed


def test_message_placeholders_and_braces() -> None:
    p = params(query="repository.visibility", expect="public",
               message="{repo}: visibility is {value}; want {{public}}.")
    result = POLICY.evaluate(snap(), p)
    assert result.message.startswith("acme/api: visibility is `private`; want {public}.")


def test_value_is_bounded_and_kept_in_a_code_span() -> None:
    huge = "k: [" + ", ".join(["'a`b @team'"] * 5_000) + "]\n"
    p = params(query="files.\"x.yaml\".documents[0].k", files=["x.yaml"], expect=[])
    result = POLICY.evaluate(snap({"x.yaml": huge}), p)
    value = result.message.split("breaks the rule: ")[1].split(".\n")[0]
    assert value.startswith('`["a\'b @team", ') and value.endswith('...`')
    assert len(value) <= VALUE_CHARS + 5
    assert render("x" * 10_000).endswith("...`")
    assert render("two\nlines") == "`two lines`"


def test_runtime_query_error_fails_with_the_reason() -> None:
    p = params(query="abs(files.\"x.yaml\".documents[0])", files=["x.yaml"])
    result = POLICY.evaluate(snap({"x.yaml": "text"}), p)
    assert not result.passed
    assert "failed on the data of `acme/api`" in result.message
    assert "abs()" in result.details["error"]


def test_query_with_backticks_is_quoted_with_a_longer_fence() -> None:
    p = params(query="abs(`\"x\"`)")
    result = POLICY.evaluate(snap(), p)
    assert '`` abs(`"x"`) ``' in result.message


# -- params ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "error"), [
    ({"query": "a[", "message": "m"}, "invalid JMESPath query: the query ends too soon"),
    ({"query": "a ]", "message": "m"}, "Unexpected token: ] (at character 3)"),
    ({"query": "`{bad", "message": "m"}, "Unclosed ` delimiter"),
    ({"query": "nope(a)", "message": "m"}, "unknown JMESPath function nope()"),
    ({"query": "length(a, b)", "message": "m"}, "length() takes 1 argument(s), not 2"),
    ({"query": "not_null()", "message": "m"}, "takes at least 1 argument(s), not 0"),
    ({"query": " ", "message": "m"}, "must not be empty"),
    ({"query": "a", "message": "{repo} {owner}"}, "unknown placeholder {owner}"),
    ({"query": "a", "message": "{value:>999999}"}, "unknown placeholder {value:>999999}"),
    ({"query": "a", "message": "{value!r}"}, "unknown placeholder {value!r}"),
    ({"query": "a", "message": "a } b"}, "Single '}'"),
    ({"query": "a", "message": "m", "sources": ["nope"]}, "unknown source 'nope'"),
    ({"query": "a", "message": "m", "files": ["../etc/passwd"]}, "not a file path"),
    ({"query": "a", "message": "m", "files": ["/abs"]}, "not a file path"),
    ({"query": "a", "message": "m", "qurey": "a"}, "qurey"),
    ({"message": "m"}, "query"),
])
def test_params_rejected(values: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as info:
        ExpressionParams.model_validate(values)
    assert error in str(info.value)


def test_deeply_nested_query_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="invalid JMESPath query"):
        ExpressionParams.model_validate({"query": "(" * 990 + "a" + ")" * 990,
                                         "message": "m"})


def test_config_reports_bad_param_with_its_line() -> None:
    text = dedent("""\
        policies:
          - name: Lifecycle
            type: expression
            action: log-only
            params:
              files: [catalog-info.yaml]
              query: "files.x | length(@, @)"
              message: "{repo} {value}"
        """)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:7: policies[0].params.query: length() takes 1 argument(s), not 2" \
        in str(info.value)
    good = parse_config(text.replace("length(@, @)", "length(@)"))
    assert good.policies[0].needs.files == frozenset({CATALOG})


@pytest.mark.parametrize(("query", "reason"), [
    # Each step doubles the data: exponential without a bound.
    ("@" + " | [@, @][]" * 40, "too much work"),
    ("to_string(@)" + " | to_string([@, @])" * 40, "over 100,000 characters"),
    ("join(to_string(@)" + " | to_string([@, @, @])" * 8 + ", ['a', 'b', 'c'])",
     "over 100,000 characters"),
])
def test_a_runaway_query_is_stopped_with_the_reason(query: str, reason: str) -> None:
    result = POLICY.evaluate(snap(), params(query=query, message="never {repo}"))
    assert not result.passed and reason in result.details["error"]
