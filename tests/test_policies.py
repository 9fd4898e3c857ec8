"""Policies are pure functions of a snapshot: tested with plain data."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import app.policies as policies_package
from app.policies import REGISTRY, Needs, RepoSnapshot


def snap(files: dict[str, str | None] | None = None, perms: str | None = "read") -> RepoSnapshot:
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        files=files or {}, workflow_permissions=perms)


def test_registry_finds_every_policy_module() -> None:
    modules = {p.stem: importlib.import_module(f"app.policies.{p.stem}")
               for p in Path(policies_package.__file__).parent.glob("*.py")
               if p.stem not in ("__init__", "base")}
    assert {"has_agents_md", "has_catalog_info_yaml", "catalog_info_has_owner",
            "correct_workflow_permissions"} <= set(REGISTRY)
    # One module per type, named for it (modules without POLICY are shared helpers).
    typed = {name: m.POLICY for name, m in modules.items() if hasattr(m, "POLICY")}
    assert set(REGISTRY) == set(typed)
    assert all(REGISTRY[name] is policy and policy.type == name
               for name, policy in typed.items())
    for policy in REGISTRY.values():
        params = policy.Params.model_validate(policy.example)
        assert policy.title and isinstance(policy.needs_for(params), Needs)


def test_has_agents_md() -> None:
    p = REGISTRY["has_agents_md"]
    assert p.evaluate(snap({"AGENTS.md": "# agents"})).passed
    failed = p.evaluate(snap({"AGENTS.md": None}))
    assert not failed.passed
    assert "AGENTS.md" in failed.message and "acme/api" in failed.message


def test_undeclared_file_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match="declare it"):
        REGISTRY["has_agents_md"].evaluate(snap({}))


def test_has_catalog_info_yaml() -> None:
    p = REGISTRY["has_catalog_info_yaml"]
    assert p.evaluate(snap({"catalog-info.yaml": "x: 1"})).passed
    assert not p.evaluate(snap({"catalog-info.yaml": None})).passed


@pytest.mark.parametrize(("text", "passed", "fragment"), [
    (None, True, "does not exist"),
    ("spec:\n  owner: team-a\n", True, "names an owner"),
    ("spec:\n  owner: ''\n", False, "spec.owner"),
    ("spec:\n  type: service\n", False, "spec.owner"),
    ("metadata:\n  name: x\n", False, "no `spec`"),
    ("spec: [unclosed\n", False, "not valid YAML"),
    ("---\nspec:\n  owner: a\n---\nmetadata:\n  name: lib\nspec:\n  type: library\n",
     False, "document 2 (lib)"),
    ("---\nspec:\n  owner: a\n---\napiVersion: v1\nkind: Location\n", True, "names an owner"),
])
def test_catalog_info_has_owner(text: str | None, passed: bool, fragment: str) -> None:
    result = REGISTRY["catalog_info_has_owner"].evaluate(snap({"catalog-info.yaml": text}))
    assert result.passed is passed
    assert fragment in result.message


@pytest.mark.parametrize(("perms", "passed"), [("read", True), ("write", False), (None, True)])
def test_correct_workflow_permissions(perms: str | None, passed: bool) -> None:
    result = REGISTRY["correct_workflow_permissions"].evaluate(snap(perms=perms))
    assert result.passed is passed
    if not passed:
        assert "write" in result.message and "Workflow permissions" in result.message
