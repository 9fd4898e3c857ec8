"""dangerous_workflow: untrusted checkouts in privileged triggers, script injection."""

from __future__ import annotations

from collections.abc import Mapping
from textwrap import dedent
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import ConfigError, parse_config
from app.policies.base import RepoSnapshot, SourceUnreadable
from app.policies.dangerous_workflow import (
    POLICY,
    DangerousWorkflowParams,
    context_paths,
    expressions,
    is_untrusted_input,
)
from app.sources.base import Unreadable
from app.sources.workflows import Workflows

WF = ".github/workflows"


def snap(files: Mapping[str, str | None] | Unreadable) -> RepoSnapshot:
    view = files if isinstance(files, Unreadable) else Workflows(files)
    return RepoSnapshot(id=1, full_name="acme/api", default_branch="main",
                        data={"workflows": view})


def run(files: Mapping[str, str | None], **params: Any) -> Any:
    return POLICY.evaluate(snap(files), DangerousWorkflowParams(**params))


def workflow(on: str, steps: str, job: str = "build") -> str:
    return dedent(f"""\
        on: {on}
        jobs:
          {job}:
            runs-on: ubuntu-latest
            steps:
        """) + steps


SAFE = workflow("issues", """\
      - name: Greet
        env:
          TITLE: ${{ github.event.issue.title }}
        run: echo "$TITLE" "${{ github.event.issue.number }}" "${{ github.sha }}"
    """)
INJECTION = workflow("issues", """\
      - uses: actions/checkout@v4
      - name: Greet
        run: |
          echo "${{ github.event.issue.title }}"
    """)
TARGET_CHECKOUT = workflow("pull_request_target", """\
      - name: Checkout
        uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: make test
    """)


def test_safe_workflow_passes() -> None:
    result = run({f"{WF}/ci.yml": SAFE})
    assert result.passed
    assert "1 workflow" in result.message
    assert result.details["count"] == 0


def test_injection_in_run_fails_with_where_and_fix() -> None:
    result = run({f"{WF}/triage.yml": INJECTION})
    assert not result.passed
    assert "`acme/api`" in result.message
    assert "`.github/workflows/triage.yml`, job `build`, step 2 (`Greet`)" in result.message
    assert "`${{ github.event.issue.title }}`" in result.message
    assert 'env: TITLE: ${{ github.event.issue.title }}' in result.message
    assert '"$TITLE"' in result.message
    assert "check out" not in result.message  # only the fix that applies
    assert result.message.endswith("#dangerous_workflow.")
    assert result.details["findings"] == [{
        "file": f"{WF}/triage.yml", "job": "build", "step": 2, "step_name": "Greet",
        "kind": "injection", "where": "run", "trigger": None,
        "what": ["${{ github.event.issue.title }}"]}]


def test_github_script_injection() -> None:
    text = workflow("issue_comment", """\
      - uses: actions/github-script@v7
        with:
          script: |
            console.log("${{ github.event.comment.body }}")
    """)
    result = run({f"{WF}/c.yml": text})
    assert not result.passed
    assert "`script:` interpolates `${{ github.event.comment.body }}`" in result.message
    assert "process.env.TITLE" in result.message


def test_untrusted_checkout_in_pull_request_target() -> None:
    result = run({f"{WF}/pr.yml": TARGET_CHECKOUT})
    assert not result.passed
    assert "step 1 (`Checkout`)" in result.message
    assert "`ref: ${{ github.event.pull_request.head.sha }}`" in result.message
    assert "`pull_request_target` workflow" in result.message
    assert "Never check out" in result.message
    assert result.details["findings"][0]["trigger"] == "pull_request_target"


def test_same_checkout_under_pull_request_is_fine() -> None:
    text = TARGET_CHECKOUT.replace("pull_request_target", "pull_request")
    assert run({f"{WF}/pr.yml": text}).passed


@pytest.mark.parametrize(("on", "with_"), [
    ("workflow_run", "ref: ${{ github.event.workflow_run.head_branch }}"),
    ("workflow_run", "ref: ${{ github.event.workflow_run.head_sha }}"),
    ("[pull_request_target]", "ref: ${{ github.head_ref }}"),
    ("{pull_request_target: {types: [opened]}}",
     "ref: refs/pull/${{ github.event.number }}/merge"),
    ("pull_request_target", "repository: ${{ github.event.pull_request.head.repo.full_name }}"),
    ("pull_request_target", "ref: ${{ github.event.pull_request.merge_commit_sha }}"),
])
def test_untrusted_refs(on: str, with_: str) -> None:
    text = workflow(on, f"""\
      - uses: actions/checkout@8e5e7e5ab8b370d6c329ec480221332ada57f0ab
        with:
          {with_}
    """)
    result = run({f"{WF}/x.yml": text})
    assert not result.passed
    assert result.details["findings"][0]["kind"] == "checkout"


def test_trusted_ref_in_privileged_trigger_passes() -> None:
    text = workflow("pull_request_target", """\
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.base.sha }}
    """)
    assert run({f"{WF}/x.yml": text}).passed


@pytest.mark.parametrize("script", [
    "gh pr checkout ${{ github.event.number }}",
    "git fetch origin pull/${{ github.event.number }}/head:pr && git checkout pr",
    "git checkout ${{ github.event.pull_request.head.sha }}",
])
def test_checkout_in_a_script_under_privileged_trigger(script: str) -> None:
    text = workflow("pull_request_target", f"""\
      - run: {script}
    """)
    result = run({f"{WF}/x.yml": text})
    assert not result.passed
    assert "checks out the pull request's code (`run:` runs" in result.message


def test_yaml_1_1_on_key_read_as_true() -> None:
    text = "%YAML 1.1\n---\n" + TARGET_CHECKOUT
    result = run({f"{WF}/pr.yml": text})
    assert not result.passed
    assert result.details["findings"][0]["kind"] == "checkout"


@pytest.mark.parametrize(("expr", "untrusted"), [
    ("${{ github.event.issue.title }}", True),
    ("${{ github.event['issue'].Title }}", True),
    ("${{ GITHUB.EVENT.PULL_REQUEST.HEAD.REF }}", True),
    ("${{ github.event.commits[0].message }}", True),
    ("${{ join(github.event.commits.*.author.name, ',') }}", True),
    ("${{ github.event.pages[2].page_name }}", True),
    ("${{ github.event.head_commit.author.email }}", True),
    ("${{ github.event.workflow_run.head_commit.message }}", True),
    ("${{ github.event.workflow_run.pull_requests[0].head.ref }}", True),
    ("${{ github.event.discussion.body }}", True),
    ("${{ github.event.review_comment.body }}", True),
    ("${{ toJSON(github.event) }}", True),
    ("${{ toJSON(github.event.pull_request) }}", True),
    ("${{ github.head_ref }}", True),
    ("${{ github.event.issue.number }}", False),
    ("${{ github.event.pull_request.head.sha }}", False),
    ("${{ github.event.pull_request.head.repo.full_name }}", False),
    ("${{ github.event_name }}", False),
    ("${{ github.repository }}", False),
    ("${{ env.TITLE }}", False),
    ("${{ mygithub.event.issue.title }}", False),
])
def test_untrusted_context(expr: str, untrusted: bool) -> None:
    assert any(map(is_untrusted_input, context_paths(expr))) is untrusted


def test_expression_scan_is_linear_on_unclosed_expressions() -> None:
    assert expressions("${{ " * 300_000) == []
    assert expressions("a ${{ x }} b ${{ y }}") == ["${{ x }}", "${{ y }}"]


def test_allow_skips_workflows_by_path_or_name() -> None:
    files = {f"{WF}/triage.yml": INJECTION, f"{WF}/pr.yml": TARGET_CHECKOUT}
    assert run(files, allow=[f"{WF}/triage.yml", "pr.*"]).passed
    left = run(files, allow=["*/triage.yml"])
    assert not left.passed
    assert {f["file"] for f in left.details["findings"]} == {f"{WF}/pr.yml"}


def test_unparsable_workflows_are_listed_but_do_not_fail() -> None:
    files: dict[str, str | None] = {
        f"{WF}/bad.yml": "jobs: [unclosed\n",
        f"{WF}/huge.yml": None,
        f"{WF}/two.yml": "on: push\njobs: {}\n---\non: push\njobs: {}\n",
        f"{WF}/empty.yml": "",
        f"{WF}/bomb.yml": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                          + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                    for p, c in zip("abcde", "bcdef", strict=True)),
        f"{WF}/ok.yml": SAFE,
    }
    result = run(files)
    assert result.passed
    message = result.message
    assert "No dangerous patterns in 1 workflow(s)." in message
    assert "`.github/workflows/bad.yml` is not valid YAML: `.github/workflows/bad.yml:2:" \
        in message
    assert "`.github/workflows/huge.yml` is over 1 MB or not text" in message
    assert "`.github/workflows/two.yml` has 2 YAML documents" in message
    assert "`.github/workflows/empty.yml` has no `jobs` mapping" in message
    assert "`.github/workflows/bomb.yml` is not valid YAML" in message and "values" in message
    assert [n["file"] for n in result.details["not_checked"]] == sorted(
        p for p in files if not p.endswith("ok.yml"))


def test_unparsable_workflow_is_named_in_a_failure_too() -> None:
    result = run({f"{WF}/triage.yml": INJECTION, f"{WF}/bad.yml": "on: [\n"})
    assert not result.passed
    assert "Not checked: `.github/workflows/bad.yml`" in result.message


def test_findings_capped_sorted_and_deterministic() -> None:
    steps = "".join(f"      - run: echo ${{{{ github.event.issue.title }}}} {i}\n"
                    for i in range(25))
    files = {f"{WF}/b.yml": workflow("issues", steps), f"{WF}/a.yml": INJECTION}
    one = run(files)
    assert one.message == run(dict(reversed(files.items()))).message
    assert one.details["count"] == 26
    assert len(one.details["findings"]) == 20
    assert one.details["findings"][0]["file"] == f"{WF}/a.yml"
    assert "- and 6 more." in one.message


def test_repository_text_stays_inside_code_spans() -> None:
    text = workflow("issues", """\
      - name: "evil ` @everyone\\n[link](x)"
        run: echo ${{ github.event.issue.body }}
    """)
    message = run({f"{WF}/x.yml": text}).message
    assert "(``evil ` @everyone [link](x)``)" in message


def test_no_workflows_passes() -> None:
    assert run({}).passed


def test_unreadable_source_is_unknown() -> None:
    snapshot = snap(Unreadable("the App lacks the workflows permission"))
    with pytest.raises(SourceUnreadable):
        POLICY.evaluate(snapshot, DangerousWorkflowParams())
    result = POLICY.judge(snapshot, DangerousWorkflowParams())
    assert result.unknown and "workflows permission" in result.message


def test_params_validation() -> None:
    assert POLICY.Params.model_validate(POLICY.example)
    assert POLICY.needs_for(DangerousWorkflowParams()).sources == frozenset({"workflows"})
    with pytest.raises(ValidationError, match="alow"):
        DangerousWorkflowParams.model_validate({"alow": ["x"]})
    with pytest.raises(ValidationError, match="not a workflow path glob"):
        DangerousWorkflowParams.model_validate({"allow": [" x"]})


def test_config_reports_bad_param_with_its_line() -> None:
    text = dedent("""\
        policies:
          - name: Workflows
            type: dangerous_workflow
            action: log-only
            params:
              allow:
                - .github/workflows/ok.yml
                - ""
        """)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "config.yaml:8: policies[0].params.allow[1]: '' is not a workflow path glob" \
        in str(info.value)
    good = parse_config(text.replace('        - ""\n', ""))
    assert good.policies[0].params == DangerousWorkflowParams(
        allow=(".github/workflows/ok.yml",))
