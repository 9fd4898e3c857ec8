"""GitHub Actions workflow files, parsed for the policies that read them.

Not a policy (it defines no POLICY, so the registry skips it): the `workflows` source gives
text; this turns each file into its triggers, jobs and steps, or the reason it could not,
with the bounded YAML loader (app/yamlsafe.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.error import YAMLError

from app.policies.base import inline_code as code
from app.sources.workflows import MAX_WORKFLOW_BYTES, Workflows
from app.yamlsafe import describe_error, describe_size, load_all

__all__ = ["Job", "Parsed", "Step", "Workflow", "code", "matches_any", "not_checked",
           "parse_workflow", "parse_workflows", "step_label"]

# Longest value quoted back into an issue (a step name, a `uses`, an expression).
QUOTE = 100


@dataclass(frozen=True)
class Step:
    index: int  # 1-based, as people count steps
    name: str | None
    uses: str | None
    run: str | None
    # `with:` inputs, scalars as text (others left out: no action takes them).
    inputs: Mapping[str, str]


@dataclass(frozen=True)
class Job:
    id: str
    # The reusable workflow the job calls (`jobs.<id>.uses`), if it does.
    uses: str | None
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Workflow:
    path: str
    # Event names from `on:` (lower case).
    triggers: frozenset[str]
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class Parsed:
    workflows: tuple[Workflow, ...]
    # (path, why it was not checked), sorted by path.
    unparsed: tuple[tuple[str, str], ...]


def matches_any(value: str, globs: Iterable[str]) -> bool:
    """fnmatch, case-sensitive (paths on GitHub are)."""
    return any(fnmatch.fnmatchcase(value, glob) for glob in globs)


def parse_workflows(view: Workflows, skip: Iterable[str] = ()) -> Parsed:
    """Every workflow of the view except paths matching a `skip` glob (a glob without `/`
    matches the file name)."""
    globs = tuple(skip)
    workflows: list[Workflow] = []
    unparsed: list[tuple[str, str]] = []
    for path, text in sorted(view.files.items()):
        name = path.rsplit("/", 1)[-1]
        if matches_any(path, globs) or matches_any(name, (g for g in globs if "/" not in g)):
            continue
        got = parse_workflow(path, text)
        if isinstance(got, Workflow):
            workflows.append(got)
        else:
            unparsed.append((path, got))
    return Parsed(tuple(workflows), tuple(unparsed))


def parse_workflow(path: str, text: str | None) -> Workflow | str:
    """The workflow, or why it cannot be read (a short sentence fragment)."""
    if text is None:
        return f"is over {describe_size(MAX_WORKFLOW_BYTES)} or not text, so it was not read"
    try:
        docs = load_all(text)
    except YAMLError as exc:  # bounds errors included: YAMLBoundsError is one
        return f"is not valid YAML: {code(describe_error(exc, path), 200)}"
    if len(docs) > 1:
        return f"has {len(docs)} YAML documents; a workflow is one"
    doc = docs[0] if docs else None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        return "has no `jobs` mapping, so it is not a workflow"
    # YAML 1.2 (ruamel's default) reads `on` as a string; a file declaring `%YAML 1.1`
    # gets the boolean True.
    on = doc["on"] if "on" in doc else doc.get(True)
    jobs = tuple(_job(str(key), value) for key, value in doc["jobs"].items()
                 if isinstance(value, dict))
    return Workflow(path, _triggers(on), jobs)


def _triggers(on: Any) -> frozenset[str]:
    if isinstance(on, str):
        names: Iterable[Any] = [on]
    elif isinstance(on, list | dict):
        names = on  # a dict iterates over its keys: the event names
    else:
        names = []
    return frozenset(name.strip().lower() for name in names if isinstance(name, str))


def _job(job_id: str, data: dict[Any, Any]) -> Job:
    raw = data.get("steps")
    steps = tuple(_step(index, step) for index, step in enumerate(
        raw if isinstance(raw, list) else [], start=1) if isinstance(step, dict))
    return Job(job_id, _text(data.get("uses")), steps)


def _step(index: int, data: dict[Any, Any]) -> Step:
    raw = data.get("with")
    inputs: dict[str, str] = {}
    for key, value in (raw.items() if isinstance(raw, dict) else ()):
        text = _text(value)
        if text is not None:
            inputs[str(key)] = text
    uses = _text(data.get("uses"))
    return Step(index, _text(data.get("name")), None if uses is None else uses.strip(),
                _text(data.get("run")), inputs)


def _text(value: Any) -> str | None:
    """A scalar as GitHub reads it into a string; None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def step_label(step: Step) -> str:
    return f"step {step.index}" + (f" ({code(step.name, 60)})" if step.name else "")


def not_checked(unparsed: tuple[tuple[str, str], ...], limit: int = 20) -> str:
    """A Markdown sentence naming the workflows that could not be read ("" for none)."""
    if not unparsed:
        return ""
    items = [f"{code(path)} {reason}" for path, reason in unparsed[:limit]]
    more = f"; and {len(unparsed) - limit} more" if len(unparsed) > limit else ""
    return "Not checked: " + "; ".join(items) + more + "."
