"""Judge one repository's snapshot under the org config: which policies apply to it
(targeting), what each says, and which failures are exempt.

Pure: the snapshot holds everything (the repository's settings and custom properties when
targeting asks for them, and its own exemptions file when the config allows one).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from ruamel.yaml.error import YAMLError

from app.config import OrgConfig, PolicyConfig
from app.config.fields import Model
from app.config.scope import MAX_REPO_EXEMPTION_DAYS, Exemption
from app.db.models import Repository
from app.policies import RepoSnapshot, Result
from app.policies.base import inline_code
from app.services.reminders import OVERRIDES_PATH
from app.sources import Needs, SourceUnreadable
from app.sources.custom_properties import SOURCE as CUSTOM_PROPERTIES
from app.sources.settings import SOURCE as SETTINGS
from app.yamlsafe import describe_error, load_all

# A repository's own exemptions (read when the org config sets allow_repo_exemptions).
REPO_EXEMPTIONS_PATH = ".github/policy-exemptions.yaml"
# Notes kept about a repository's exemptions file (they are shown on its page).
MAX_NOTES = 10


@dataclass
class Judgement:
    # Policy name -> result, for the policies that apply to the repository.
    results: dict[str, Result] = field(default_factory=dict)
    # Policy name -> why it does not apply (targeting).
    out_of_scope: dict[str, str] = field(default_factory=dict)
    # Policy name -> the exemption in force for its failure (Exemption.as_json).
    exempt: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Problems with the repository's exemptions file (shown on its dashboard page).
    notes: list[str] = field(default_factory=list)


def scanned(repo: Repository, cfg: OrgConfig | None) -> bool:
    """Whether scans look at the repository: present, not archived, and a fork only when
    a policy opts forks in (`fork: true`)."""
    return repo.present and not repo.archived and (
        not repo.fork or (cfg is not None and cfg.scans_forks()))


def needs_of(cfg: OrgConfig) -> Needs:
    """Everything a scan of a repository reads under `cfg`: the policies' needs, what the
    targeting looks at, and the repository's own settings and exemptions files."""
    files = {OVERRIDES_PATH}
    if cfg.allow_repo_exemptions:
        files.add(REPO_EXEMPTIONS_PATH)
    needs = Needs(files=frozenset(files))
    for pc in cfg.policies:
        needs = needs | policy_needs(cfg, pc)
    return needs


def policy_needs(cfg: OrgConfig, pc: PolicyConfig) -> Needs:
    """What judging one policy reads: its own needs and what its targeting looks at."""
    target = cfg.target(pc)
    sources = ({SETTINGS.name} if target.topics is not None else set()) | \
        ({CUSTOM_PROPERTIES.name} if target.custom_properties else set())
    return pc.needs | Needs(sources=frozenset(sources))


class _RepoExemption(Model):
    policies: tuple[str, ...]
    reason: str
    expires: dt.date


def repo_exemptions(text: str | None, repo_name: str, cfg: OrgConfig, today: dt.date
                    ) -> tuple[list[Exemption], list[str]]:
    """The exemptions a repository grants itself, and notes on what was ignored. Each needs
    a reason and an expiry at most MAX_REPO_EXEMPTION_DAYS ahead, and names policies of the
    config; anything else is ignored with a note (the file cannot break a scan)."""
    if text is None or not cfg.allow_repo_exemptions:
        return [], []
    where = REPO_EXEMPTIONS_PATH
    try:
        docs = [d for d in load_all(text) if d is not None]
    except YAMLError as exc:
        return [], [f"{describe_error(exc, where)}; no exemption in it applies"]
    data = docs[0] if len(docs) == 1 else None
    items = data.get("exemptions") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return [], [f"{where} must be a mapping with an `exemptions:` list; no exemption in "
                    "it applies"]
    names = {p.name for p in cfg.policies}
    out: list[Exemption] = []
    notes: list[str] = []
    for index, item in enumerate(items):
        if len(notes) >= MAX_NOTES:
            notes.append(f"{where}: more problems after exemptions[{index - 1}] are not listed")
            break
        try:
            parsed = _RepoExemption.model_validate(item)
            exemption = Exemption(repos=(repo_name,), policies=parsed.policies,
                                  reason=parsed.reason, expires=parsed.expires)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            notes.append(f"{where}: exemptions[{index}]{'.' + loc if loc else ''}: "
                         f"{first['msg'].removeprefix('Value error, ')}; ignored")
            continue
        unknown = [p for p in parsed.policies if p not in names]
        if unknown:
            notes.append(f"{where}: exemptions[{index}] names policies that are not in the "
                         f"organization's config ({', '.join(unknown)}); ignored")
        elif parsed.expires > today + dt.timedelta(days=MAX_REPO_EXEMPTION_DAYS):
            notes.append(f"{where}: exemptions[{index}] expires {parsed.expires}, more than "
                         f"{MAX_REPO_EXEMPTION_DAYS} days ahead; ignored (ask for an "
                         "exemption in the organization's config instead)")
        else:
            out.append(exemption)
    return out, notes


def exempt_reason(policy: str, exemption: dict[str, Any]) -> str:
    """Why an issue closes for an exemption, for the issue: the reason (the repository's own
    file may hold it) as inline code, so it can neither render nor mention anyone."""
    until = f" until {exemption['expires']}" if exemption.get("expires") else ""
    who = exemption.get("approved_by")
    by = f", approved by {inline_code(str(who), 50)}" if who else ""
    return (f"**{policy}** is exempt for this repository{until}{by}: "
            f"{inline_code(str(exemption.get('reason') or ''), 300)}.")


def _properties(snapshot: RepoSnapshot) -> dict[str, Any] | None:
    if CUSTOM_PROPERTIES.name not in snapshot.data:
        return None
    try:
        return dict(CUSTOM_PROPERTIES.of(snapshot).values)
    except SourceUnreadable:
        return None


def scope_miss(cfg: OrgConfig, pc: PolicyConfig, snapshot: RepoSnapshot) -> str | None:
    """Why the policy does not apply to the snapshot's repository (None: it does)."""
    topics = SETTINGS.of(snapshot).topics if SETTINGS.name in snapshot.data else None
    props = _properties(snapshot)
    target = cfg.target(pc)
    if target.custom_properties and props is None:
        # Unknown values: the policy is judged, rather than dropped on a guess.
        target = type(target)(**{**target.__dict__, "custom_properties": None})
    return target.miss(snapshot.full_name.rsplit("/", 1)[-1], fork=snapshot.fork,
                       visibility=snapshot.visibility, topics=topics, properties=props)


def judge(cfg: OrgConfig, snapshot: RepoSnapshot,
          policies: Sequence[PolicyConfig] | None = None, *, repo_file: bool = True
          ) -> Judgement:
    """Evaluate every policy (of `policies`, default all) that applies; a failure an
    exemption covers is recorded as exempt (the org config's exemptions first, then the
    repository's own, unless `repo_file` is False: a pull request's head could exempt
    itself)."""
    out = Judgement()
    name = snapshot.full_name.rsplit("/", 1)[-1]
    today = dt.datetime.fromtimestamp(snapshot.taken_at, dt.UTC).date()
    own: list[Exemption] = []
    if repo_file:
        own, out.notes = repo_exemptions(snapshot.files.get(REPO_EXEMPTIONS_PATH), name,
                                         cfg, today)
    for pc in cfg.policies if policies is None else policies:
        miss = scope_miss(cfg, pc, snapshot)
        if miss is not None:
            out.out_of_scope[pc.name] = miss
            continue
        result = pc.evaluate(snapshot)
        out.results[pc.name] = result
        if result.passed or result.unknown:
            continue
        for source, exemptions in (("config", cfg.exemptions), (REPO_EXEMPTIONS_PATH, own)):
            found = next((e for e in exemptions
                          if e.covers(name, pc.name) and e.active_on(today)), None)
            if found is not None:
                out.exempt[pc.name] = {**found.as_json(source), "text": found.describe()}
                break
    return out
