"""What a proposed config would change, computed from what the last scans stored: for each
policy, the repositories that would newly violate it and those that would newly comply. No
GitHub read and no action; policies whose data was not stored are counted as not previewed
(the first scan after the change judges them)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.config import OrgConfig
from app.db.models import Repository
from app.services.judging import judge, policy_needs
from app.services.snapshot_cache import stored_snapshot

# Names listed per policy and direction; the counts are complete.
LISTED = 20
# Exemptions that expire within this many days are pointed out.
EXPIRING_DAYS = 14


@dataclass
class PolicyPreview:
    name: str
    newly_violating: list[str] = field(default_factory=list)
    newly_complying: list[str] = field(default_factory=list)
    not_previewed: int = 0
    removed: bool = False


@dataclass
class Preview:
    policies: list[PolicyPreview]
    # (repository globs, policies, expiry) of exemptions expiring soon.
    expiring: list[tuple[str, str, dt.date]]
    repositories: int

    @property
    def violating(self) -> int:
        return sum(len(p.newly_violating) for p in self.policies)

    @property
    def complying(self) -> int:
        return sum(len(p.newly_complying) for p in self.policies)


def preview(new: OrgConfig, repos: Iterable[Repository],
            open_now: Mapping[int, set[str]], today: dt.date) -> Preview:
    """`open_now`: repository id -> the names of its policies open (violating) now."""
    by_name: dict[str, PolicyPreview] = {pc.name: PolicyPreview(pc.name) for pc in new.policies}
    removed: dict[str, PolicyPreview] = defaultdict(lambda: PolicyPreview("", removed=True))
    forks = new.scans_forks()
    count = 0
    for repo in sorted(repos, key=lambda r: r.full_name.lower()):
        if not repo.present or repo.archived or repo.empty or (repo.fork and not forks):
            continue
        count += 1
        was_open = open_now.get(repo.id, set())
        for pc in new.policies:
            out = by_name[pc.name]
            snap = stored_snapshot(repo, policy_needs(new, pc))
            if snap is None:
                out.not_previewed += 1
                continue
            judged = judge(new, snap, [pc], repo_file=False)
            result = judged.results.get(pc.name)
            failing = result is not None and not result.passed and not result.unknown \
                and pc.name not in judged.exempt
            if failing and pc.name not in was_open:
                out.newly_violating.append(repo.full_name)
            elif not failing and pc.name in was_open and not (result and result.unknown):
                out.newly_complying.append(repo.full_name)
        for name in was_open - by_name.keys():
            gone = removed[name]
            gone.name = name
            gone.newly_complying.append(repo.full_name)
    soon = today + dt.timedelta(days=EXPIRING_DAYS)
    expiring = [(", ".join(e.repos), ", ".join(e.policies), e.expires)
                for e in new.exemptions if e.expires is not None and today <= e.expires <= soon]
    return Preview([*by_name.values(), *sorted(removed.values(), key=lambda p: p.name)],
                   sorted(expiring, key=lambda x: x[2]), count)


def merged(parts: list[Preview]) -> Preview:
    """Previews of chunks of the repositories, as one (policies in the first's order)."""
    by_name: dict[str, PolicyPreview] = {}
    for part in parts:
        for pol in part.policies:
            into = by_name.setdefault(pol.name, PolicyPreview(pol.name, removed=pol.removed))
            into.newly_violating += pol.newly_violating
            into.newly_complying += pol.newly_complying
            into.not_previewed += pol.not_previewed
    kept = [p for p in by_name.values() if not p.removed]
    gone = sorted((p for p in by_name.values() if p.removed), key=lambda p: p.name)
    return Preview([*kept, *gone], parts[0].expiring if parts else [],
                   sum(p.repositories for p in parts))


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:LISTED])
    more = len(names) - LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def preview_markdown(p: Preview) -> str:
    lines = [f"Judged against what the last scans stored for {p.repositories} repositories; "
             "nothing was read from GitHub and no action was taken.", "",
             "| Policy | Would newly violate | Would newly comply | Not previewed |",
             "| --- | ---: | ---: | ---: |"]
    for pol in p.policies:
        label = f"{pol.name} (removed)" if pol.removed else pol.name
        lines.append(f"| {label} | {len(pol.newly_violating)} | {len(pol.newly_complying)} "
                     f"| {pol.not_previewed} |")
    for pol in p.policies:
        if pol.newly_violating:
            lines += ["", f"**{pol.name}** would newly violate in: "
                      + _names(pol.newly_violating)]
        if pol.newly_complying:
            lines += ["", f"**{pol.name}** would newly comply in: "
                      + _names(pol.newly_complying)]
    if any(pol.not_previewed for pol in p.policies):
        lines += ["", "Not previewed: the data those policies read was not stored by the "
                      "last scans (a file or setting the current config does not read, or "
                      "data read live at every scan). The first scan after merging judges "
                      "them."]
    if p.expiring:
        lines += ["", f"Exemptions expiring within {EXPIRING_DAYS} days:"]
        lines += [f"- `{repos}` from {policies}: expires {day.isoformat()}"
                  for repos, policies, day in p.expiring]
    return "\n".join(lines)
