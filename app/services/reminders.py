"""Reminders on open issues that nobody has touched for a while, and the repository's own
`.github/policy-enforcer.yaml` that may lengthen their interval.

An hourly cron job (`queue_reminders`) queues one `send_reminders` job per configured
installation. That job picks, from the database alone, the open violations whose issue may
be due (filed or last reminded at least N days ago), asks GitHub for each one's
`updated_at`, and posts a reminder where the issue has had no activity for N days and today
(UTC) is not one of the policy's quiet days.

At most one reminder per period of inactivity, even when a job runs twice or two run at
once: each reminder is posted under the violation's reconcile lock, carries a hidden marker
naming the period (the issue's `updated_at` it answers), is not posted when a comment with
that marker exists, and itself updates the issue (so the next period starts with it).
`violations.reminded_at` records it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import gidgethub
from ruamel.yaml.error import YAMLError
from sqlalchemy import or_, select

from app.config import OrgConfig
from app.db.models import ActionLog, Installation, Repository, Violation, utcnow
from app.github.paths import repo_path
from app.services.config import config_for
from app.services.context import Services
from app.services.links import repo_page_url
from app.services.queue import exclusive
from app.services.reconcile import CREATE_ISSUE
from app.services.scan_requests import reconcile_key
from app.yamlsafe import describe_error, load_all

log = logging.getLogger(__name__)

# The repository's own settings file, read with the snapshot at the default branch's head.
OVERRIDES_PATH = ".github/policy-enforcer.yaml"
REMINDER = "reminder"  # the action log's name for a reminder
# A reminder check for an issue with recent activity is not repeated before it could be due.
_NEXT_KEY = "pe:remind-next:{}"
_LOCK_WAIT = 30.0


# ----------------------------------------------------------------------------- overrides
def _days(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 365:
        return value
    return None


def parse_overrides(text: str | None, cfg: OrgConfig | None) -> dict[str, Any] | None:
    """The repository's `.github/policy-enforcer.yaml`, as stored in repositories.overrides:
    {"remind_after_days": N (or absent), "notes": [...]}; None when there is no file.

    The repository's team does not own the org's config: the file may lengthen the
    reminder interval, nothing else. Anything it cannot do, or cannot say validly, is
    ignored with a note that the dashboard shows."""
    if text is None:
        return None
    notes: list[str] = []
    out: dict[str, Any] = {}
    try:
        docs = load_all(text)
    except YAMLError as exc:
        return {"notes": [f"{describe_error(exc, OVERRIDES_PATH)}; the file is ignored"]}
    data = docs[0] if len(docs) == 1 else docs or None
    if data is None:
        return {"notes": []}
    if not isinstance(data, dict):
        return {"notes": [f"{OVERRIDES_PATH} must be a mapping (such as "
                          "`remind_after_days: 30`); the file is ignored"]}
    for key, value in data.items():
        if key != "remind_after_days":
            what = ("cannot turn enforcement off or change it" if str(key).lower() in
                    ("enforcement", "enabled", "disabled", "enforce", "dry_run", "dry-run",
                     "policies", "actions", "action") else "is not a setting it can change")
            notes.append(f"unknown key {str(key)!r} ignored: the repository's file {what} "
                         "(only remind_after_days, to lengthen the reminder interval)")
        elif _days(value) is None:
            notes.append(f"remind_after_days: {value!r} ignored: it must be a whole number of "
                         "days from 1 to 365 (the repository's file cannot turn reminders "
                         "off)")
        else:
            out["remind_after_days"] = value
    days = out.get("remind_after_days")
    if days is not None and cfg is not None:
        for pc in cfg.policies:
            org_days = cfg.effective(pc).remind_after_days
            if org_days is not None and days < org_days:
                notes.append(f"remind_after_days: {days} is shorter than the organization's "
                             f"{org_days} for policy {pc.name!r}; the organization's applies "
                             "(the repository's file may only lengthen it)")
        if all(cfg.effective(pc).remind_after_days is None for pc in cfg.policies):
            notes.append("reminders are off in the organization's config, so "
                         "remind_after_days here has no effect")
    out["notes"] = notes
    return out


def effective_days(org_days: int | None, overrides: Mapping[str, Any] | None) -> int | None:
    """The reminder interval for a repository: the org's, or the repository's when longer.
    Off (None) when the org has reminders off."""
    if org_days is None:
        return None
    own = _days((overrides or {}).get("remind_after_days"))
    return max(org_days, own or 0)


# ----------------------------------------------------------------------------- jobs
def reminders_job_id(installation_id: int, now: datetime) -> str:
    return f"reminders:{installation_id}:{now:%Y%m%d%H}"


async def queue_reminders(svc: Services, now: datetime | None = None) -> int:
    """Cron: one send_reminders job per active, configured installation (fixed ids per
    hour, so a second worker's run queues nothing twice). Returns how many were queued."""
    now = now or utcnow()
    async with svc.db() as db:
        ids = list(await db.scalars(select(Installation.id).where(
            Installation.active.is_(True), Installation.config_text.is_not(None))))
    for inst_id in ids:
        await svc.redis.enqueue_job("send_reminders", inst_id,
                                    _job_id=reminders_job_id(inst_id, now))
    return len(ids)


@dataclass(frozen=True)
class _Due:
    violation_id: int
    policy: str
    message: str
    repo: str  # the repository the violation is about
    issue_repo: str  # where its issue is
    number: int
    days: int


async def _candidates(svc: Services, installation_id: int, now: datetime
                      ) -> tuple[OrgConfig | None, list[_Due]]:
    async with svc.db() as db:
        inst = await db.get(Installation, installation_id)
        cfg = config_for(inst) if inst is not None and inst.active else None
        if cfg is None:
            return None, []
        weekday = now.strftime("%A").lower()
        # A policy in dry-run writes nothing to GitHub, reminders included.
        settings = {pc.name: eff for pc in cfg.policies
                    if CREATE_ISSUE in pc.actions and not (eff := cfg.effective(pc)).dry_run}
        active = {name: eff.remind_after_days for name, eff in settings.items()
                  if eff.remind_after_days is not None and weekday not in eff.quiet_days}
        if not active:
            return cfg, []
        # Filed or reminded less than the shortest interval ago: not due, whatever GitHub says
        # (the issue's updated_at is at least as late as the App's own last write to it).
        edge = now - timedelta(days=min(active.values()))
        rows = await db.execute(
            select(Violation, Repository)
            .join(Repository, Repository.id == Violation.repository_id)
            .where(Violation.installation_id == installation_id, Violation.state == "open",
                   Violation.issue_number.is_not(None), Violation.policy.in_(list(active)),
                   Violation.first_seen_at <= edge,
                   or_(Violation.reminded_at.is_(None), Violation.reminded_at <= edge))
            .order_by(Violation.id))
        due: list[_Due] = []
        for v, repo in rows.all():
            days = effective_days(active[v.policy], repo.overrides)
            last = max(v.first_seen_at, v.reminded_at or v.first_seen_at)
            issue_repo = v.issue_repository or repo.full_name
            writable = v.issue_repository is not None or (repo.present and not repo.archived)
            if days is None or last > now - timedelta(days=days) or not writable \
                    or v.reconciled.get(CREATE_ISSUE) != "open" or v.issue_number is None:
                continue
            due.append(_Due(v.id, v.policy, v.message, repo.full_name, issue_repo,
                            v.issue_number, days))
        return cfg, due


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


async def send_reminders(svc: Services, installation_id: int,
                         now: datetime | None = None) -> int:
    """Post the installation's due reminders; returns how many were posted."""
    now = now or utcnow()
    _, due = await _candidates(svc, installation_id, now)
    if not due:
        return 0
    gh = svc.github.installation(installation_id, bulk=True)
    posted = 0
    for item in due:
        if await svc.redis.exists(_NEXT_KEY.format(item.violation_id)):
            continue
        try:
            async with exclusive(svc.redis, reconcile_key(item.violation_id), wait=_LOCK_WAIT):
                posted += await _remind(svc, gh, installation_id, item, now)
        except TimeoutError:
            continue  # being reconciled right now; the next run looks again
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) in (404, 410):  # gone, or issues disabled meanwhile
                log.info("reminder for violation %s skipped: %s", item.violation_id, exc)
                continue
            raise
    return posted


async def _remind(svc: Services, gh: Any, installation_id: int, item: _Due,
                  now: datetime) -> int:
    async with svc.db() as db:
        v = await db.get(Violation, item.violation_id)
        if v is None or v.state != "open" or v.issue_number != item.number or \
                (v.reminded_at is not None and v.reminded_at > now - timedelta(days=item.days)):
            return 0  # changed since it was picked
    base = f"{repo_path(item.issue_repo)}/issues/{item.number}"
    issue = await gh.getitem(base)
    updated = _parse_time(issue.get("updated_at"))
    if issue.get("state") != "open" or updated is None:
        # Closed by a person (respect_manual_close) or unreadable: not asked every hour.
        await svc.redis.set(_NEXT_KEY.format(item.violation_id), 1, ex=item.days * 86400)
        return 0
    due_at = updated + timedelta(days=item.days)
    if due_at > now:
        # Active meanwhile: not asked again before it could be due.
        await svc.redis.set(_NEXT_KEY.format(item.violation_id), 1,
                            ex=max(60, int((due_at - now).total_seconds())))
        return 0
    period = str(issue.get("updated_at"))
    # The issue's comments are searched, so the period alone names the reminder.
    mark = f"<!-- policy-enforcer:reminder:{period} -->"
    async for comment in gh.getiter(f"{base}/comments?per_page=100"):
        if mark in (comment.get("body") or ""):
            break  # an earlier run posted it and stopped before recording it
    else:
        link = repo_page_url(svc.settings.PUBLIC_URL, item.repo)
        text = (f"Reminder: this issue has had no activity for {item.days} days, and "
                f"**{item.repo}** still violates **{item.policy}**: {item.message}")
        if link:
            text += f"\n\n[{item.repo} on the policy dashboard]({link})"
        comment = await gh.post(f"{base}/comments", data={"body": f"{text}\n\n{mark}"})
        async with svc.db() as db, db.begin():
            row = await db.get(Violation, item.violation_id)
            if row is not None:
                row.reminded_at = now
                db.add(ActionLog(installation_id=installation_id,
                                 repository_id=row.repository_id, repository=item.repo,
                                 violation_id=row.id, policy=row.policy, action=REMINDER,
                                 status="success",
                                 detail=f"reminded on issue {item.issue_repo}#{item.number} "
                                        f"after {item.days} days without activity",
                                 url=comment.get("html_url")))
        return 1
    async with svc.db() as db, db.begin():
        row = await db.get(Violation, item.violation_id)
        if row is not None:
            row.reminded_at = now
    return 0
