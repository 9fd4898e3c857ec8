"""actions_pinned: third-party actions and reusable workflows pinned to a commit SHA."""

from __future__ import annotations

from collections.abc import Mapping
from textwrap import dedent
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies.actions_pinned import POLICY, ActionsPinnedParams, unpinned
from app.policies.base import RepoSnapshot, SourceUnreadable
from app.sources.base import Unreadable
from app.sources.workflows import Workflows

WF = ".github/workflows"
SHA = "8e5e7e5ab8b370d6c329ec480221332ada57f0ab"
DIGEST = "sha256:" + "ab" * 32


def snap(files: Mapping[str, str | None] | Unreadable) -> RepoSnapshot:
    view = files if isinstance(files, Unreadable) else Workflows(files)
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"workflows": view})


def run(files: Mapping[str, str | None], **params: Any) -> Any:
    return POLICY.evaluate(snap(files), ActionsPinnedParams(**params))


def workflow(*uses: str, job: str = "build") -> str:
    steps = "".join(f"      - uses: {u}\n" for u in uses)
    return f"on: push\njobs:\n  {job}:\n    runs-on: ubuntu-latest\n    steps:\n{steps}"


@pytest.mark.parametrize(("uses", "flagged"), [
    ("actions/checkout@v4", False),  # GitHub's own: allowed by default
    ("Actions/Cache@v3", False),  # owners are case-insensitive
    ("github/codeql-action/init@v3", False),
    ("./.github/actions/build", False),
    (f"docker://alpine@{DIGEST}", False),
    ("docker://alpine:3.19", True),
    ("docker://alpine", True),
    (f"docker/build-push-action@{SHA}", False),
    (f"docker/build-push-action@{SHA.upper()}", False),
    ("docker/build-push-action@v5", True),
    (f"docker/build-push-action@{SHA[:7]}", True),  # a short SHA can be made ambiguous
    ("docker/build-push-action@main", True),
    ("docker/build-push-action", True),
    (f"acme/workflows/.github/workflows/ci.yml@{SHA}", False),
    ("acme/workflows/.github/workflows/ci.yml@main", True),
])
def test_unpinned(uses: str, flagged: bool) -> None:
    assert unpinned(uses, ActionsPinnedParams()) is flagged


def test_pinned_workflows_pass() -> None:
    text = workflow("actions/checkout@v4", f"docker/setup-buildx-action@{SHA} # v3.0.0",
                    "./local")
    result = run({f"{WF}/ci.yml": text})
    assert result.passed
    assert result.message == "Every action in 1 workflow(s) is pinned."


def test_unpinned_actions_fail_with_file_job_and_how_to_pin() -> None:
    text = workflow("actions/checkout@v4", "docker/login-action@v3", "docker/login-action@v3")
    result = run({f"{WF}/release.yml": text})
    assert not result.passed
    assert "`acme/api`" in result.message
    assert "- `.github/workflows/release.yml`, job `build`: `docker/login-action@v3`" \
        in result.message
    assert result.message.count("docker/login-action@v3") == 1  # repeats listed once
    assert "uses: owner/repo@<40-character sha> # vX.Y" in result.message
    assert result.message.endswith("#actions_pinned.")
    assert result.details["unpinned"] == [
        {"file": f"{WF}/release.yml", "job": "build", "uses": "docker/login-action@v3"}]


def test_reusable_workflow_jobs_are_checked() -> None:
    text = dedent("""\
        on: push
        jobs:
          call:
            uses: acme/shared/.github/workflows/build.yml@main
          local:
            uses: ./.github/workflows/local.yml
        """)
    result = run({f"{WF}/ci.yml": text})
    assert not result.passed
    assert result.details["unpinned"] == [
        {"file": f"{WF}/ci.yml", "job": "call",
         "uses": "acme/shared/.github/workflows/build.yml@main"}]


def test_allow_owners_replaces_the_default() -> None:
    text = workflow("actions/checkout@v4", "My-Org/deploy@v1")
    result = run({f"{WF}/ci.yml": text}, allow_owners=["my-org"])
    assert [u["uses"] for u in result.details["unpinned"]] == ["actions/checkout@v4"]


def test_allow_globs() -> None:
    text = workflow("docker/login-action@v3", "docker/build-push-action@v5",
                    "acme/tools/lint@v1", "other/thing@v1")
    result = run({f"{WF}/ci.yml": text}, allow=["docker/*", "Acme/tools/*"])
    assert [u["uses"] for u in result.details["unpinned"]] == ["other/thing@v1"]


def test_capped_at_twenty_sorted_and_deterministic() -> None:
    files = {f"{WF}/b.yml": workflow(*(f"o/a{i:02}@v1" for i in range(22))),
             f"{WF}/a.yml": workflow("z/z@v1", job="zz")}
    result = run(files)
    assert result.message == run(dict(reversed(files.items()))).message
    assert result.details["count"] == 23
    assert len(result.details["unpinned"]) == 20
    assert result.details["unpinned"][0]["file"] == f"{WF}/a.yml"
    assert "- and 3 more." in result.message


def test_unparsable_workflow_is_listed_not_failed() -> None:
    result = run({f"{WF}/bad.yml": "jobs: {\n", f"{WF}/big.yml": None})
    assert result.passed
    assert "Every action in 0 workflow(s) is pinned." in result.message
    assert "`.github/workflows/bad.yml` is not valid YAML" in result.message
    assert "`.github/workflows/big.yml` is over 1 MB" in result.message


def test_multi_document_workflow_is_not_checked() -> None:
    text = workflow("evil/action@v1") + "---\n" + workflow("evil/action@v1")
    result = run({f"{WF}/x.yml": text})
    assert result.passed and "has 2 YAML documents" in result.message


def test_unreadable_source_is_unknown() -> None:
    snapshot = snap(Unreadable("no access"))
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(snapshot, ActionsPinnedParams())
    assert POLICY.judge(snapshot, ActionsPinnedParams()).unknown


def test_params_validation() -> None:
    params = ActionsPinnedParams.model_validate(POLICY.example)
    assert POLICY.needs_for(params).sources == frozenset({"workflows"})
    assert ActionsPinnedParams(allow_owners=("MyOrg",)).allow_owners == ("myorg",)
    with pytest.raises(ValidationError, match="allow_owner"):
        ActionsPinnedParams.model_validate({"allow_owner": ["x"]})
    with pytest.raises(ValidationError, match="not a GitHub user or organization name"):
        ActionsPinnedParams.model_validate({"allow_owners": ["my org"]})
    with pytest.raises(ValidationError, match="no `@ref`"):
        ActionsPinnedParams.model_validate({"allow": ["docker/login-action@v3"]})


def test_config_reports_bad_param_with_its_line() -> None:
    text = dedent("""\
        policies:
          - name: Pinned
            type: actions_pinned
            action: log-only
            params:
              allow: [docker/*, nodocker]
        """)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:6: policies[0].params.allow[1]: 'nodocker' is not an" \
        in str(info.value)
