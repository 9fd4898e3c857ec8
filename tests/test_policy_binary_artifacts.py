"""binary_artifacts: binaries committed to the default branch, by extension."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies.base import RepoSnapshot, SourceUnreadable
from app.policies.binary_artifacts import (
    DEFAULT_EXTENSIONS,
    POLICY,
    BinaryArtifactsParams,
    is_binary,
)
from app.sources.base import Unreadable
from app.sources.tree import Tree, TreeEntry


def snap(tree: Tree | Unreadable) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"tree": tree})


def tree(*paths: str, truncated: bool = False) -> Tree:
    return Tree("f" * 40, tuple(TreeEntry(p, 10) for p in paths), truncated)


def run(view: Tree | Unreadable, **params: Any) -> Any:
    return POLICY.evaluate(snap(view), BinaryArtifactsParams(**params))


DEFAULTS = frozenset(DEFAULT_EXTENSIONS)


@pytest.mark.parametrize(("path", "binary"), [
    ("bin/tool.exe", True),
    ("lib/App.DLL", True),
    ("build/libfoo.so", True),
    ("build/libssl.so.3", True),
    ("build/libfoo.so.1.2", True),
    ("target/app.jar", True),
    ("pkg/__pycache__/m.cpython-311.pyc", True),
    ("a.out.o", True),
    ("web/app.wasm", True),
    ("src/main.c", False),
    ("README.md", False),
    ("docs/solution.md", False),  # "so" is an extension, not a substring
    ("config/.so", False),  # a dot-file named ".so" has no extension
    ("Makefile", False),
    ("notes.so.txt", False),
])
def test_is_binary(path: str, binary: bool) -> None:
    assert is_binary(path, DEFAULTS) is binary


def test_clean_tree_passes() -> None:
    result = run(tree("src/main.py", "README.md"))
    assert result.passed
    assert result.message == "No binary files found."


def test_binaries_fail_sorted_with_fix() -> None:
    result = run(tree("z/tool.exe", "src/main.py", "a/lib.jar"))
    assert not result.passed
    assert "`acme/api` has 2 binary file(s) on its default branch (`main`)" in result.message
    assert result.message.index("`a/lib.jar`") < result.message.index("`z/tool.exe`")
    assert "build them from source in CI" in result.message and "`allow`" in result.message
    assert result.message.endswith("#binary_artifacts.")
    assert result.details == {"paths": ["a/lib.jar", "z/tool.exe"], "count": 2,
                              "truncated": False}


def test_allow_globs() -> None:
    view = tree("gradle/wrapper/gradle-wrapper.jar", "tests/fixtures/x/a.bin", "out/a.exe")
    result = run(view, allow=["gradle/wrapper/gradle-wrapper.jar", "tests/fixtures/**"])
    assert result.details["paths"] == ["out/a.exe"]


def test_extensions_replace_the_default_list() -> None:
    view = tree("a.exe", "b.tar.gz", "c.GZ", "d.png")
    result = run(view, extensions=[".tar.gz", "PNG"])
    assert result.details["paths"] == ["b.tar.gz", "d.png"]


def test_symlinks_are_not_binaries() -> None:
    view = Tree("f" * 40, (TreeEntry("lib/libfoo.so", 12, "120000"),))
    assert run(view).passed


def test_capped_at_twenty() -> None:
    result = run(tree(*(f"bin/t{i:02}.exe" for i in range(25))))
    assert result.details["count"] == 25 and len(result.details["paths"]) == 20
    assert "- and 5 more." in result.message
    assert "bin/t19.exe" in result.message and "bin/t20.exe" not in result.message


def test_truncated_tree_says_it_checked_only_part() -> None:
    clean = run(tree("a.py", truncated=True))
    assert clean.passed and "only part" in clean.message
    dirty = run(tree("a.exe", truncated=True))
    assert not dirty.passed and "only part" in dirty.message
    assert dirty.details["truncated"] is True


def test_empty_repository_passes() -> None:
    result = run(Tree(None, ()))
    assert result.passed and "empty" in result.message


def test_path_text_stays_in_its_code_span() -> None:
    result = run(tree("evil`\n@team.exe"))
    assert "- `evil' @team.exe`" in result.message


def test_unreadable_source_is_unknown() -> None:
    snapshot = snap(Unreadable("no access"))
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(snapshot, BinaryArtifactsParams())
    assert POLICY.judge(snapshot, BinaryArtifactsParams()).unknown


def test_params_validation() -> None:
    params = BinaryArtifactsParams.model_validate(POLICY.example)
    assert POLICY.needs_for(params).sources == frozenset({"tree"})
    assert BinaryArtifactsParams(extensions=(".JAR",)).extensions == ("jar",)
    with pytest.raises(ValidationError, match=r"extension\b"):
        BinaryArtifactsParams.model_validate({"extension": ["jar"]})
    with pytest.raises(ValidationError, match="at least one extension"):
        BinaryArtifactsParams.model_validate({"extensions": []})
    with pytest.raises(ValidationError, match="not a file extension"):
        BinaryArtifactsParams.model_validate({"extensions": ["a/b"]})
    with pytest.raises(ValidationError, match="not a path glob"):
        BinaryArtifactsParams.model_validate({"allow": ["/abs/*"]})


def test_config_reports_bad_param_with_its_line() -> None:
    text = dedent("""\
        policies:
          - name: Binaries
            type: binary_artifacts
            action: log-only
            params:
              extensions:
                - jar
                - "*.exe"
        """)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:8: policies[0].params.extensions[1]: '*.exe' is not a file extension" \
        in str(info.value)
