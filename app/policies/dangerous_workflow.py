"""No workflow lets untrusted input run code with the workflow's privileges.

Two patterns, after OpenSSF Scorecard's Dangerous-Workflow check:
- a `pull_request_target` or `workflow_run` workflow (secrets, a write token) that checks
  out the pull request's code: `actions/checkout` with an untrusted `ref:` or
  `repository:`, or `gh pr checkout` / `git fetch … pull/…` in a script;
- an attacker-chosen value (an issue title, a branch name, a commit message, …)
  interpolated with `${{ }}` into a `run:` script or an `actions/github-script` script,
  where it becomes code, whatever the trigger.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from app.policies.base import DOCS_URL, Needs, Params, PolicyBase, Remedy, RepoSnapshot, Result
from app.policies.workflow_yaml import (
    Step,
    Workflow,
    code,
    not_checked,
    parse_workflows,
    step_label,
)
from app.sources.workflows import SOURCE

PRIVILEGED = ("pull_request_target", "workflow_run")
LIMIT = 20

# Context fields whose values whoever opens the issue / pull request / discussion or
# pushes the branch chooses (Scorecard's list; GitHub Security Lab's "untrusted input").
# `*` is one segment: an array index or a `.*` filter.
UNTRUSTED_INPUT = tuple(tuple(p.split(".")) for p in (
    "github.head_ref",
    "github.event.issue.title", "github.event.issue.body",
    "github.event.pull_request.title", "github.event.pull_request.body",
    "github.event.pull_request.head.ref", "github.event.pull_request.head.label",
    "github.event.pull_request.head.repo.default_branch",
    "github.event.comment.body", "github.event.review.body",
    "github.event.review_comment.body",
    "github.event.pages.*.page_name",
    "github.event.commits.*.message", "github.event.commits.*.author.email",
    "github.event.commits.*.author.name",
    "github.event.head_commit.message", "github.event.head_commit.author",
    "github.event.workflow_run.head_branch", "github.event.workflow_run.head_commit",
    "github.event.workflow_run.pull_requests.*.head.ref",
    "github.event.discussion.title", "github.event.discussion.body",
))
# Refs and repositories that name the pull request's code (prefixes).
UNTRUSTED_REF = tuple(tuple(p.split(".")) for p in (
    "github.head_ref",
    "github.event.pull_request.head", "github.event.pull_request.merge_commit_sha",
    "github.event.workflow_run.head_sha", "github.event.workflow_run.head_branch",
    "github.event.workflow_run.head_commit", "github.event.workflow_run.pull_requests",
    "github.event.workflow_run.head_repository",
))

# A context reference: `github.event.issue.title`, `github['event'].commits[0].message`.
# Bracket contents are bounded so that no input makes the scan quadratic.
_PATH = re.compile(r"(?<![\w.])github(?:\.[a-z_][\w-]*|\.\*|\[[^\]\n]{0,100}\])*")
_SEGMENT = re.compile(r"\.([a-z_][\w-]*)|\.\*|\[\s*'([^']*)'\s*\]|\[[^\]]*\]")
_PR_REF = re.compile(r"\bpull/[^/\n]{1,100}/(?:head|merge)\b|refs/pull/")


def _glob(glob: str) -> str:
    if not glob.strip() or glob != glob.strip() or len(glob) > 200:
        raise ValueError(f"{glob!r} is not a workflow path glob (non-empty, no surrounding "
                         "spaces, at most 200 characters)")
    return glob


class DangerousWorkflowParams(Params):
    # Workflow paths (globs) not checked; a glob without `/` matches the file name.
    allow: tuple[Annotated[str, AfterValidator(_glob)], ...] = Field(default=(), max_length=100)


@dataclass(frozen=True)
class Finding:
    file: str
    job: str
    step: Step
    kind: str  # "injection" or "checkout"
    # The offending expressions or ref, as written.
    what: tuple[str, ...]
    where: str  # "run", "script", "ref", "repository"
    # The privileged trigger a checkout runs under ("" for an injection).
    trigger: str = ""

    def line(self) -> str:
        at = f"{code(self.file)}, job {code(self.job, 60)}, {step_label(self.step)}"
        shown = ", ".join(code(w) for w in self.what[:3])
        if len(self.what) > 3:
            shown += f" and {len(self.what) - 3} more"
        if self.kind == "injection":
            return f"- {at}: `{self.where}:` interpolates {shown}, which an outsider chooses."
        how = f"`{self.where}:` runs {shown}" if self.where == "run" else \
            code(f"{self.where}: {self.what[0]}")
        return (f"- {at}: checks out the pull request's code ({how}) in a "
                f"`{self.trigger}` workflow, which runs with the repository's secrets and a "
                "write token.")

    def json(self) -> dict[str, Any]:
        return {"file": self.file, "job": self.job, "step": self.step.index,
                "step_name": self.step.name, "kind": self.kind, "where": self.where,
                "trigger": self.trigger or None,
                "what": [w[:200] for w in self.what[:5]]}


def context_paths(text: str) -> list[tuple[str, ...]]:
    """The `github` context references in an expression, normalised: lower case (GitHub's
    property names are case-insensitive), `['x']` → x, any index → `*`."""
    out = []
    for match in _PATH.finditer(text.lower()):
        segments = ["github"]
        for seg in _SEGMENT.finditer(match.group(0), len("github")):
            segments.append(seg.group(1) or seg.group(2) or "*")
        out.append(tuple(segments))
    return out


def _compatible(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return all(a == b or "*" in (a, b) for a, b in zip(path, pattern, strict=False))


def is_untrusted_input(path: tuple[str, ...]) -> bool:
    """The field itself, something inside it, or an object holding it (`toJSON(github.event)`)."""
    return any(_compatible(path, pattern) for pattern in UNTRUSTED_INPUT)


def is_untrusted_ref(path: tuple[str, ...]) -> bool:
    return any(len(path) >= len(p) and _compatible(path, p) for p in UNTRUSTED_REF)


def expressions(text: str) -> list[str]:
    """The `${{ … }}` expressions in a script, with str.find: linear whatever the text."""
    out, start = [], text.find("${{")
    while start >= 0:
        end = text.find("}}", start + 3)
        if end < 0:
            break
        out.append(text[start:end + 2])
        start = text.find("${{", end + 2)
    return out


def _injections(text: str) -> tuple[str, ...]:
    found = [e for e in expressions(text) if any(map(is_untrusted_input, context_paths(e)))]
    return tuple(dict.fromkeys(found))


def _untrusted_checkout(value: str) -> bool:
    return bool(_PR_REF.search(value)) or any(map(is_untrusted_ref, context_paths(value)))


def _script_checkouts(run: str) -> tuple[str, ...]:
    """Script lines that fetch the pull request's code (`gh pr checkout`, `git fetch origin
    pull/1/head`, `git checkout ${{ github.head_ref }}`)."""
    found = []
    for line in run.splitlines():
        low = line.lower()
        if "gh pr checkout" in low or ("git " in low and _untrusted_checkout(low)):
            found.append(line.strip())
    return tuple(found)


def _step_problems(step: Step, privileged: bool) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(kind, where, what) for each problem of one step."""
    uses = (step.uses or "").lower()
    if step.run is not None:
        yield "injection", "run", _injections(step.run)
        if privileged:
            yield "checkout", "run", _script_checkouts(step.run)
    if uses.startswith("actions/github-script@") and "script" in step.inputs:
        yield "injection", "script", _injections(step.inputs["script"])
    if privileged and uses.split("@")[0] == "actions/checkout":
        for key in ("ref", "repository"):
            value = step.inputs.get(key, "")
            if _untrusted_checkout(value.lower()):
                yield "checkout", key, (value.strip(),)


def findings_of(workflow: Workflow) -> list[Finding]:
    trigger = next((t for t in PRIVILEGED if t in workflow.triggers), "")
    return [Finding(workflow.path, job.id, step, kind, what, where,
                    trigger if kind == "checkout" else "")
            for job in workflow.jobs for step in job.steps
            for kind, where, what in _step_problems(step, bool(trigger)) if what]


class DangerousWorkflow(PolicyBase):
    type: ClassVar[str] = "dangerous_workflow"
    title: ClassVar[str] = "Workflows do not run untrusted input"
    Params: ClassVar[builtins.type[Params]] = DangerousWorkflowParams
    example: ClassVar[dict[str, Any]] = {"allow": [".github/workflows/experimental-*.yml"]}
    needs: ClassVar[Needs] = Needs(sources=frozenset({"workflows"}))
    remedy: ClassVar[Remedy | None] = None

    def evaluate(self, snapshot: RepoSnapshot, params: Any = None) -> Result:
        params = params if isinstance(params, DangerousWorkflowParams) \
            else DangerousWorkflowParams()
        parsed = parse_workflows(SOURCE.of(snapshot), params.allow)
        found = [f for w in parsed.workflows for f in findings_of(w)]
        skipped = not_checked(parsed.unparsed)
        details: dict[str, Any] = {
            "findings": [f.json() for f in found[:LIMIT]], "count": len(found),
            "not_checked": [{"file": p, "reason": r} for p, r in parsed.unparsed[:LIMIT]]}
        if not found:
            return Result(True, " ".join(filter(None, [
                f"No dangerous patterns in {len(parsed.workflows)} workflow(s).", skipped])),
                details)
        lines = [f.line() for f in found[:LIMIT]]
        if len(found) > LIMIT:
            lines.append(f"- and {len(found) - LIMIT} more.")
        fixes = []
        if any(f.kind == "injection" for f in found):
            fixes.append(
                "Pass untrusted values to scripts through environment variables, never "
                "`${{ }}` inside the script: on the step, `env: TITLE: ${{ "
                "github.event.issue.title }}`, then `\"$TITLE\"` in `run:` "
                "(`process.env.TITLE` in `actions/github-script`).")
        if any(f.kind == "checkout" for f in found):
            fixes.append(
                "Never check out or run a pull request's code in a `pull_request_target` or "
                "`workflow_run` workflow: build and test it in a `pull_request` workflow, "
                "which has no secrets, and hand results on as artifacts.")
        message = "\n\n".join(filter(None, [
            f"`{snapshot.full_name}` has workflows that let untrusted input run code with "
            "the workflow's privileges:", "\n".join(lines), " ".join(fixes), skipped,
            f"See {DOCS_URL}#{self.type}."]))
        return Result(False, message, details)


POLICY = DangerousWorkflow()
