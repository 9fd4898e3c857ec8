"""file_exists: required files, and one-of alternatives, on the default branch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config.loader import ConfigError, parse_config
from app.policies import REGISTRY, RepoSnapshot
from app.policies.base import DOCS_URL
from app.policies.file_exists import POLICY, FileExistsParams

LICENSES = ["LICENSE", "LICENSE.md", "LICENSE.txt"]


def snap(files: dict[str, str | None], too_large: dict[str, int] | None = None
         ) -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main", files=files,
                        too_large=too_large or {})


def params(**values: object) -> FileExistsParams:
    return FileExistsParams.model_validate(values)


def test_registered_with_a_valid_example() -> None:
    assert REGISTRY["file_exists"] is POLICY
    example = POLICY.Params.model_validate(POLICY.example)
    assert isinstance(example, FileExistsParams)


def test_needs_the_union_of_paths_and_any_of() -> None:
    p = params(paths=["README.md"], any_of=LICENSES)
    assert POLICY.needs_for(p).files == frozenset({"README.md", *LICENSES})


def test_every_path_present_passes() -> None:
    p = params(paths=["README.md", "CONTRIBUTING.md"], any_of=LICENSES)
    files = {"README.md": "# api", "CONTRIBUTING.md": "x", "LICENSE": None,
             "LICENSE.md": "MIT", "LICENSE.txt": None}
    result = POLICY.evaluate(snap(files), p)
    assert result.passed
    assert "\n" not in result.message


def test_missing_paths_are_named_sorted_with_where_to_add_them() -> None:
    p = params(paths=["SECURITY.md", "README.md", "CONTRIBUTING.md"])
    result = POLICY.evaluate(snap({"SECURITY.md": None, "README.md": None,
                                   "CONTRIBUTING.md": "x"}), p)
    assert not result.passed
    assert "`README.md` and `SECURITY.md`" in result.message
    assert "acme/api" in result.message and "(`main`)" in result.message
    assert "Add them at those paths" in result.message
    assert result.message.endswith(f"See {DOCS_URL}#file_exists.")
    assert result.details == {"missing": ["README.md", "SECURITY.md"]}


def test_none_of_any_of_fails_suggesting_the_first() -> None:
    p = params(any_of=[".github/SECURITY.md", "SECURITY.md", "docs/SECURITY.md"])
    result = POLICY.evaluate(snap({".github/SECURITY.md": None, "SECURITY.md": None,
                                   "docs/SECURITY.md": None}), p)
    assert not result.passed
    assert "none of `.github/SECURITY.md`, `SECURITY.md` and `docs/SECURITY.md`" in \
        result.message
    assert "for example `.github/SECURITY.md`" in result.message
    assert result.details["missing_any_of"] == [".github/SECURITY.md", "SECURITY.md",
                                                "docs/SECURITY.md"]


def test_both_problems_in_one_message() -> None:
    p = params(paths=["README.md"], any_of=LICENSES)
    result = POLICY.evaluate(snap({"README.md": None, **dict.fromkeys(LICENSES)}), p)
    assert not result.passed
    assert "missing `README.md`" in result.message and "none of `LICENSE`" in result.message
    assert result.message.count("See ") == 1


def test_a_file_too_large_to_read_still_exists() -> None:
    p = params(paths=["data.bin"])
    assert POLICY.evaluate(snap({"data.bin": ""}, {"data.bin": 5 << 20}), p).passed


def test_messages_are_deterministic() -> None:
    p = params(paths=["b", "a", "c"])
    files: dict[str, str | None] = {"a": None, "b": None, "c": None}
    assert POLICY.evaluate(snap(files), p) == POLICY.evaluate(snap(files), p)


def test_long_lists_are_capped() -> None:
    names = [f"f{i:02}" for i in range(30)]
    result = POLICY.evaluate(snap(dict.fromkeys(names)), params(paths=names))
    assert "10 more" in result.message and len(result.details["missing"]) == 20


@pytest.mark.parametrize(("values", "fragment"), [
    ({}, "give `paths`"),
    ({"paths": [], "any_of": []}, "give `paths`"),
    ({"paths": ["/README.md"]}, "no leading '/'"),
    ({"paths": ["../x"]}, "'..'"),
    ({"paths": ["docs/./x"]}, "'..'"),
    ({"paths": ["docs/"]}, "trailing '/'"),
    ({"paths": ["  "]}, "must not be empty"),
    ({"paths": [" README.md"]}, "whitespace"),
    ({"any_of": ["LICENSE", "LICENSE"]}, "more than once in any_of"),
    ({"paths": "README.md"}, "tuple"),
    ({"path": ["README.md"]}, "Extra inputs"),
])
def test_bad_params_are_rejected(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        FileExistsParams.model_validate(values)
    assert fragment in str(info.value)


def test_a_bad_param_is_reported_at_its_line() -> None:
    text = ("policies:\n"
            "  - name: license\n"
            "    type: file_exists\n"
            "    action: log-only\n"
            "    params:\n"
            "      paths: [README.md, /etc/passwd]\n"
            "      any_of: [LICENSE]\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:6:" in str(info.value)
    assert "no leading '/'" in str(info.value)
    good = parse_config(text.replace("/etc/passwd", "SECURITY.md"))
    assert good.policies[0].needs.files == frozenset({"README.md", "SECURITY.md", "LICENSE"})


def test_a_misspelt_key_is_reported_with_a_suggestion() -> None:
    text = ("policies:\n"
            "  - name: license\n"
            "    type: file_exists\n"
            "    action: log-only\n"
            "    params:\n"
            "      any_off: [LICENSE]\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:6:" in str(info.value) and "did you mean 'any_of'" in str(info.value)
