"""YAML and file bounds: hostile config.yaml and catalog-info.yaml files, and files too
large to download, end as clear errors and violations in bounded time and memory, never
as exceptions or repositories that "errored"."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from app.config import ConfigError, parse_config
from app.policies.base import MAX_FILE_BYTES, RepoSnapshot, Result
from app.policies.catalog_info_has_owner import POLICY as CATALOG_OWNER
from app.policies.has_catalog_info_yaml import POLICY as HAS_CATALOG
from app.services.rest_reads import TooLarge, fetch_file
from app.yamlsafe import MAX_BYTES, MAX_DEPTH, MAX_VALUES, describe_size, size_over
from tests.fakegithub.server import FakeGitHub
from tests.stack import Stack, services_for
from tests.test_e2e import CONFIG, install, open_issues

# Generous: these guard against unbounded work (at about 1.3 s per 20,000 values, all
# 300,000 of FLAT would take some 20 s, an alias bomb far longer); they are no benchmark.
# Stopping at the limit takes 1.3-2.4 s on a loaded 2-core machine: the bound allows that.
SECONDS = 6.0
PEAK_BYTES = 16 * 1024 * 1024


def _alias_bomb() -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings once expanded."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def _merge_bomb() -> str:
    """Each mapping merges the one before: quadratic once the merges are flattened."""
    lines = ["m0: &m0 {k0: 0}"]
    lines += [f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: {i}}}" for i in range(1, 3000)]
    return "\n".join(lines) + "\n"


# (id, text, the error's line or None, what the error says)
BOMBS: list[tuple[str, str, int | None, str]] = [
    ("10 MB", "a: " + "x" * (10 * 1024 * 1024), None, "the file is 10 MB; the limit is 1 MB"),
    ("10 MB of multibyte text", "é" * (10 * 1024 * 1024), None, "the limit is 1 MB"),
    ("100k [", "[" * 100_000, 1, f"nests more than {MAX_DEPTH} levels deep"),
    ("100k {a:", "{a: " * 100_000, 1, f"nests more than {MAX_DEPTH} levels deep"),
    ("deep block mappings", "".join(" " * i + "a:\n" for i in range(200)), MAX_DEPTH,
     f"nests more than {MAX_DEPTH} levels deep"),
    ("deep block sequences", "- " * 100_000, 1, f"nests more than {MAX_DEPTH} levels deep"),
    ("alias bomb", _alias_bomb(), 5, f"more than {MAX_VALUES} values once aliases are expanded"),
    ("merge bomb", _merge_bomb(), 100, f"more than {MAX_VALUES} values once aliases"),
    ("tab indentation", "spec:\n\towner: x\n", 2, "found character '\\t' that cannot start"),
    ("NUL byte", "spec:\n  owner: a\x00b\n", 2, "unacceptable character #x0000"),
    ("impossible date", "spec:\n  owner: 2024-02-30\n", 2, "cannot read '2024-02-30'"),
    ("bad !!int", "spec:\n  owner: !!int 0x\n", 2, "cannot read '0x' as !!int"),
    ("garbage", "}{][:,&*!|>'\"%@`\n", 1, ""),
]


def bounded(fn: Callable[[], Any], seconds: float = SECONDS) -> Any:
    """fn() within `seconds`, timed without tracemalloc (which slows Python down manyfold);
    then again under tracemalloc, whose peak stays under PEAK_BYTES."""
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"allocated {peak / 1e6:.1f} MB at peak"
    return result


def snapshot(text: str | None, too_large: dict[str, int] | None = None) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        files={"catalog-info.yaml": text}, too_large=too_large or {})


# ----------------------------------------------------------------------------- config.yaml
@pytest.mark.parametrize(("text", "line", "says"), [b[1:] for b in BOMBS],
                         ids=[b[0] for b in BOMBS])
def test_config_bombs_are_config_errors(text: str, line: int | None, says: str) -> None:
    def parse() -> ConfigError:
        with pytest.raises(ConfigError) as info:
            parse_config(text)
        return info.value

    error = bounded(parse)
    (problem,) = error.problems
    assert problem.line == line
    assert says in problem.message
    assert str(problem).startswith("config.yaml" if line is None else f"config.yaml:{line}: ")


def test_config_at_the_size_limit_is_parsed_and_over_it_is_not() -> None:
    head = "policies:\n  - name: A\n    type: has_agents_md\n    action: log-only\n"
    padding = "#" * (MAX_BYTES - len(head) - 1) + "\n"
    assert len(head + padding) == MAX_BYTES
    assert [p.name for p in parse_config(head + padding).policies] == ["A"]
    with pytest.raises(ConfigError) as info:
        parse_config(head + padding + "\n")
    assert str(info.value) == (
        "config.yaml: the file is 1,048,577 bytes; the limit is 1,048,576 bytes")


def test_config_nesting_up_to_the_limit_is_a_validation_error_not_a_depth_error() -> None:
    # The top mapping, 62 lists and the scalar in them: MAX_DEPTH levels, which parse.
    nested = "[" * (MAX_DEPTH - 2) + "x" + "]" * (MAX_DEPTH - 2)
    with pytest.raises(ConfigError) as info:
        parse_config(f"policies: []\nextra: {nested}\n")
    assert str(info.value).startswith("config.yaml:2: extra: unknown key 'extra'")
    with pytest.raises(ConfigError) as info:
        parse_config(f"policies: []\nextra: [{nested}]\n")
    assert str(info.value) == (
        f"config.yaml:2: the document nests more than {MAX_DEPTH} levels deep")


# The most work a file under MAX_BYTES can ask for: MAX_VALUES distinct values.
FLAT = "[" + "a, " * 300_000 + "]"


def test_config_of_too_many_plain_values_stops_at_the_limit() -> None:
    def parse() -> ConfigError:
        with pytest.raises(ConfigError) as info:
            parse_config(FLAT)
        return info.value

    error = bounded(parse)
    assert str(error) == (
        f"config.yaml:1: the file has more than {MAX_VALUES} values once aliases are expanded")


# ----------------------------------------------------------------------------- catalog-info
@pytest.mark.parametrize(("text", "line", "says"), [b[1:] for b in BOMBS],
                         ids=[b[0] for b in BOMBS])
def test_catalog_bombs_are_violations(text: str, line: int | None, says: str) -> None:
    result: Result = bounded(lambda: CATALOG_OWNER.evaluate(snapshot(text)))
    assert not result.passed
    where = "catalog-info.yaml" if line is None else f"catalog-info.yaml:{line}:"
    assert result.details["error"].startswith(where)
    assert says in result.details["error"]
    assert result.details["error"] in result.message
    assert len(result.message) < 600  # it goes into an issue, whatever the file holds
    assert HAS_CATALOG.evaluate(snapshot(text)).passed


def test_catalog_of_too_many_plain_values_stops_at_the_limit() -> None:
    result: Result = bounded(lambda: CATALOG_OWNER.evaluate(snapshot(FLAT)))
    assert not result.passed
    assert result.details["error"].startswith("catalog-info.yaml:1:")
    assert f"more than {MAX_VALUES} values" in result.details["error"]


def test_catalog_with_many_documents_and_anchors_still_reads() -> None:
    # Anchors redefined in every document, and aliases within each: valid, and fine.
    doc = "metadata: {name: &n svc}\nspec: {owner: group:a, name: *n}\n"
    result = CATALOG_OWNER.evaluate(snapshot("---\n".join([doc] * 500)))
    assert result.passed, result.message


def test_too_large_file_is_a_violation_with_its_size() -> None:
    result = CATALOG_OWNER.evaluate(snapshot("", {"catalog-info.yaml": 12 * 1024 * 1024}))
    assert not result.passed
    assert result.details == {"path": "catalog-info.yaml", "size": 12 * 1024 * 1024,
                              "error": "catalog-info.yaml is 12 MB; the limit is 1 MB"}
    assert "`catalog-info.yaml` in `acme/api` is 12 MB; the limit is 1 MB" in result.message
    # Present all the same: one problem, one violation.
    assert HAS_CATALOG.evaluate(snapshot("", {"catalog-info.yaml": 12 * 1024 * 1024})).passed


def test_sizes_read_as_people_write_them() -> None:
    assert [describe_size(n) for n in (900, 300 * 1024, MAX_FILE_BYTES, 1536 * 1024,
                                       12 * 1024 * 1024 + 5)] == \
        ["900 bytes", "300 KB", "1 MB", "1.5 MB", "12 MB"]
    assert size_over(12 * 1024 * 1024, MAX_FILE_BYTES) == "is 12 MB; the limit is 1 MB"
    # Rounding would make these look equal: exact bytes then.
    assert size_over(MAX_FILE_BYTES + 1, MAX_FILE_BYTES) == \
        "is 1,048,577 bytes; the limit is 1,048,576 bytes"


# ----------------------------------------------------------------------------- through GitHub
BIG = 12 * 1024 * 1024


async def test_rest_read_of_a_file_over_the_limit_does_not_download_it(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    inst = st.add_installation("acme", [{"name": "a", "files": {
        "catalog-info.yaml": "x" * (2 * 1024 * 1024), "AGENTS.md": "y" * MAX_FILE_BYTES}}])
    gh = services_for(stack).github.installation(inst.id)
    assert await fetch_file(gh, "acme/a", "catalog-info.yaml", "main") == \
        TooLarge(2 * 1024 * 1024)
    assert await fetch_file(gh, "acme/a", "AGENTS.md", "main") == "y" * MAX_FILE_BYTES
    assert await fetch_file(gh, "acme/a", "missing.yaml", "main") is None
    # One request each: the size came with the JSON, and the raw content was not asked for.
    assert st.count_requests("GET", "/repos/acme/a/contents/catalog-info.yaml") == 1
    assert st.count_requests("GET", "/repos/acme/a/contents/AGENTS.md") == 1


async def test_hostile_catalogs_are_violations_in_a_real_scan(
        stack: Stack, fake_github: FakeGitHub) -> None:
    st = fake_github.state
    specs: list[dict[str, object]] = [
        {"name": ".github", "files": {"config.yaml": CONFIG, "AGENTS.md": "x",
                                      "catalog-info.yaml": "spec:\n  owner: a\n"}}]
    catalogs = {"big": "spec:\n  owner: group:a\n" + "#" * BIG,
                "bomb": _alias_bomb(), "deep": "[" * 100_000, "tabs": "spec:\n\towner: a\n"}
    for name, text in catalogs.items():
        specs.append({"name": name, "files": {"AGENTS.md": "x", "catalog-info.yaml": text}})
    inst = st.add_installation("acme", specs)
    await install(stack, st, inst)

    (full,) = [s for s in await stack.scans() if s.kind == "full"]
    assert (full.status, full.total, full.done, full.errored) == ("ok", 5, 5, 0)
    assert all(r.last_scan_status == "ok" for r in await stack.repositories())
    for name in catalogs:
        assert set(open_issues(st, f"acme/{name}")) == {"Catalog owner"}, name
    errors = {v.details.get("path") and v.details["error"]
              for v in await stack.violations("open")}
    assert errors == {
        "catalog-info.yaml is 12 MB; the limit is 1 MB",
        f"catalog-info.yaml:5:15: the file has more than {MAX_VALUES} values once aliases are "
        "expanded",
        f"catalog-info.yaml:1:{MAX_DEPTH + 1}: the document nests more than {MAX_DEPTH} "
        "levels deep",
        "catalog-info.yaml:2:1: found character '\\t' that cannot start any token (while "
        "scanning for the next token)",
    }
    issue = open_issues(st, "acme/big")["Catalog owner"]
    assert "is 12 MB; the limit is 1 MB" in (issue.body or "")
    # GraphQL gave the size; nothing asked for the 12 MB through REST.
    assert st.count_requests("GET", "/repos/acme/big/contents/") == 0
