"""Turn a verified webhook delivery into state changes and jobs (runs in the worker)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.actions.base import parse_marker
from app.db.models import Installation, Repository, Violation, WebhookDelivery
from app.services import fixes
from app.services.commands import parse_commands
from app.services.config import CONFIG_REPO, config_for
from app.services.config_checks import request_config_check
from app.services.context import Services
from app.services.deliveries import FAILED
from app.services.installations import rename_account
from app.services.judging import scanned
from app.services.pull_events import (
    on_check_run,
    on_check_suite,
    on_merge_group,
    on_pull_request,
)
from app.services.queue import ahead_of_bulk
from app.services.reconcile import RESPECTED
from app.services.scan_requests import request_full_scan, request_repo_scan
from app.services.source_events import SOURCE_EVENTS, on_source_event
from app.services.store import ensure_installation, mark_removed, upsert_repository
from app.services.withdrawals import (
    REPO_ARCHIVED,
    REPO_DELETED,
    REPO_REMOVED,
    REPO_TRANSFERRED,
    withdraw,
)

# A command waits for a worker this long (arq derives no sane expiry from a score that
# `ahead_of_bulk` puts in the past, so it is always given).
COMMAND_JOB_EXPIRY = 24 * 3600

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[Services, Payload], Awaitable[str]]


async def record_delivery(svc: Services, delivery_id: str, event: str, action: str | None,
                          installation_id: int | None) -> bool:
    """Durably record the delivery; False when this id was already processed.

    Deduplication is on "processed", not on "seen": a delivery whose job died half-way is
    still "received", and one whose job failed for good is "failed: ..."; both are handled
    again (arq delivers at least once, redeliveries repeat a GUID, and every handler is
    idempotent).
    """
    try:
        async with svc.db() as db, db.begin():
            db.add(WebhookDelivery(delivery_id=delivery_id, event=event, action=action,
                                   installation_id=installation_id, outcome="received"))
    except IntegrityError:
        async with svc.db() as db, db.begin():
            row = await db.get(WebhookDelivery, delivery_id)
            if row is None or not (row.outcome == "received"
                                   or row.outcome.startswith(FAILED)):
                return False
            row.outcome = "received"
    return True


async def set_outcome(svc: Services, delivery_id: str, outcome: str) -> None:
    async with svc.db() as db, db.begin():
        row = await db.get(WebhookDelivery, delivery_id)
        if row is not None:
            row.outcome = outcome[:255]


def _account(p: Payload) -> dict[str, Any] | None:
    """The account a repository event belongs to (for an installation first seen here)."""
    owner = p.get("organization") or (p.get("repository") or {}).get("owner")
    if isinstance(owner, dict) and owner.get("login"):
        return {"login": owner["login"], "type": owner.get("type", "Organization")}
    return None


async def enqueue_full_scan(svc: Services, installation_id: int, trigger: str) -> None:
    # One queued full scan per installation is enough; a request joins the queued one.
    await request_full_scan(svc, installation_id, trigger)


async def _installation(svc: Services, p: Payload) -> str:
    action = p.get("action")
    inst_data = p["installation"]
    inst_id = int(inst_data["id"])
    async with svc.db() as db, db.begin():
        inst = await ensure_installation(db, inst_id, inst_data.get("account"))
        if action == "created" or action == "new_permissions_accepted":
            inst.active, inst.suspended = True, False
            for repo in p.get("repositories") or []:
                await upsert_repository(db, inst_id, repo)
        elif action == "deleted":
            inst.active = False
        elif action == "suspend":
            inst.active, inst.suspended = False, True
        elif action == "unsuspend":
            inst.active, inst.suspended = True, False
        else:
            return "ignored"
        active = inst.active
    if active and action in ("created", "unsuspend"):
        await enqueue_full_scan(svc, inst_id, f"webhook:installation.{action}")
        return "full scan queued"
    if active and action == "new_permissions_accepted":
        # Fixes GitHub refused for want of a permission may work now (with a new token).
        await svc.github.forget_token(inst_id)
        released = await fixes.release_refused(svc, inst_id)
        return f"recorded; {released} refused fixes queued again"
    return "installation inactive" if not active else "recorded"


async def _installation_target(svc: Services, p: Payload) -> str:
    """The account was renamed: the config is read under its new login from now on."""
    inst_id = int(p["installation"]["id"])
    account = p.get("account") or {}
    if p.get("action") != "renamed" or not account.get("login"):
        return "ignored"
    await rename_account(svc, inst_id, str(account["login"]),
                         str(account.get("type") or "") or None)
    await enqueue_full_scan(svc, inst_id, "webhook:installation_target.renamed")
    return "account renamed; full scan queued"


async def _installation_repositories(svc: Services, p: Payload) -> str:
    inst_id = int(p["installation"]["id"])
    added = p.get("repositories_added") or []
    removed = [int(r["id"]) for r in p.get("repositories_removed") or []]
    async with svc.db() as db, db.begin():
        await ensure_installation(db, inst_id, p["installation"].get("account"))
        ids = [(await upsert_repository(db, inst_id, r)).id for r in added]
        await mark_removed(db, removed)
    await withdraw(svc, inst_id, REPO_REMOVED, repo_ids=removed)
    for rid in ids:
        await request_repo_scan(svc, inst_id, rid, trigger="webhook:installation_repositories")
    if any(r.get("name") == CONFIG_REPO for r in added):
        await enqueue_full_scan(svc, inst_id, "webhook:installation_repositories:config")
    return f"{len(ids)} added, {len(removed)} removed"


RESCAN_REPOSITORY_ACTIONS = {"created", "edited", "renamed", "unarchived", "publicized",
                             "privatized", "transferred"}


async def _repository(svc: Services, p: Payload) -> str:
    action = str(p.get("action"))
    inst_id = int(p["installation"]["id"])
    data = p["repository"]
    gone = None
    async with svc.db() as db, db.begin():
        inst = await ensure_installation(db, inst_id, _account(p), authoritative=False)
        if action == "deleted":
            gone = REPO_DELETED
        elif action == "transferred" and inst.account_login and \
                data["owner"]["login"].lower() != inst.account_login.lower():
            gone = REPO_TRANSFERRED
        if gone is not None:
            await mark_removed(db, [int(data["id"])])
        else:
            repo = await upsert_repository(db, inst_id, data)
            scannable = scanned(repo, config_for(inst))
    if gone is not None:
        await withdraw(svc, inst_id, gone, repo_ids=[int(data["id"])])
        return "repository removed"
    if action == "archived":
        # Archived repositories are not scanned; their violations end with the reason. The
        # reconciler records why their issues stay as they are (GitHub allows no writes).
        await withdraw(svc, inst_id, REPO_ARCHIVED, repo_ids=[int(data["id"])])
        return "repository archived; its violations resolved"
    if action in RESCAN_REPOSITORY_ACTIONS and scannable:
        await request_repo_scan(svc, inst_id, int(data["id"]),
                                trigger=f"webhook:repository.{action}")
        return "scan queued"
    return "recorded"


async def _push(svc: Services, p: Payload) -> str:
    inst_id = int(p["installation"]["id"])
    data = p["repository"]
    branch = data.get("default_branch") or data.get("master_branch")
    if p.get("ref") != f"refs/heads/{branch}" or p.get("deleted"):
        return "ignored: not the default branch"
    outcome = []
    if data.get("name") == CONFIG_REPO:
        # Any push: a force-push or a merge can change config.yaml without listing it in
        # the commits the payload carries (GitHub caps them at 20, and none for a force-push).
        await enqueue_full_scan(svc, inst_id, "webhook:push:config")
        outcome.append("config reload and full scan queued")
        if p.get("after"):
            await request_config_check(svc, inst_id, int(data["id"]), str(p["after"]))
            outcome.append("config check queued")
    async with svc.db() as db, db.begin():
        await ensure_installation(db, inst_id, _account(p), authoritative=False)
        existing = await db.get(Repository, int(data["id"]))
        # A push payload's repository has `owner` as an object and no `visibility` in
        # older shapes; only the fields upsert understands are used.
        repo = await upsert_repository(db, inst_id, data) if existing is None else existing
        inst = await db.get(Installation, inst_id)
        scannable = scanned(repo, config_for(inst) if inst is not None else None)
    if scannable:
        await request_repo_scan(svc, inst_id, int(data["id"]), trigger="webhook:push")
        outcome.append("scan queued")
    return ", ".join(outcome) or "ignored"


async def _issue_comment(svc: Services, p: Payload) -> str:
    if p.get("action") != "created":
        return "ignored: not a new comment"
    comment = p["comment"]
    user = comment.get("user") or {}
    if user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]"):
        return "ignored: comment by a bot"
    commands = parse_commands(comment.get("body") or "")
    if not commands:
        return "ignored: no command"
    inst_id = int(p["installation"]["id"])
    repo = p["repository"]
    async with svc.db() as db, db.begin():
        await ensure_installation(db, inst_id, _account(p), authoritative=False)
        if await db.get(Repository, int(repo["id"])) is None:
            await upsert_repository(db, inst_id, repo)
    for name, args in commands[:5]:
        await svc.redis.enqueue_job(
            "run_command", inst_id, int(repo["id"]), repo["full_name"],
            int(p["issue"]["number"]), int(comment["id"]), str(user.get("login")), name, args,
            _job_id=f"command:{comment['id']}:{name}", _defer_until=ahead_of_bulk(),
            _expires=COMMAND_JOB_EXPIRY)
    return f"{len(commands[:5])} command(s) queued"


async def _issues(svc: Services, p: Payload) -> str:
    """A person closed, deleted or transferred one of the App's issues."""
    action = p.get("action")
    if action not in ("closed", "deleted", "transferred"):
        return "ignored"
    issue = p["issue"]
    parsed = parse_marker(issue.get("body") or "")
    if parsed is None:
        return "ignored: not an issue of this App"
    # An issue in a central issue repository names the repository it is about.
    policy, about = parsed
    bot = await svc.github.bot_login()
    author = issue.get("user") or {}
    if author.get("type") != "Bot" or author.get("login") != bot:
        # Anyone can write a marker into an issue; only the App's own issues count.
        return "ignored: not an issue of this App"
    sender = p.get("sender") or {}
    login = str(sender.get("login") or "")
    if sender.get("type") == "Bot" and login == bot:
        return "ignored: closed by this App"
    inst_id, number = int(p["installation"]["id"]), int(issue["number"])
    repo_id = about if about is not None else int(p["repository"]["id"])
    async with svc.db() as db, db.begin():
        inst = await db.get(Installation, inst_id)
        v = await db.scalar(select(Violation).where(Violation.repository_id == repo_id,
                                                    Violation.policy == policy))
        if inst is None or v is None or v.installation_id != inst_id \
                or v.issue_number not in (None, number) or (
                about is not None and (v.issue_repository or "").lower()
                != str(p["repository"]["full_name"]).lower()):
            return "ignored: no violation tracks this issue"
        if action != "closed":
            # Gone from the repository: a new issue is filed if the violation is open.
            v.issue_number = None
            v.reconciled = {k: s for k, s in v.reconciled.items() if k != "create-issue"}
            outcome = f"issue {action}; a new one is filed while the violation is open"
        elif v.state != "open":
            return "recorded: closed while the violation is resolved"
        else:
            cfg = config_for(inst)
            pc = next((c for c in cfg.policies if c.name == policy), None) if cfg else None
            if pc is not None and pc.respect_manual_close:
                # Recorded, so nothing later (a new archive date, a moved issue_repo)
                # reopens it; a new failure after the violation resolves files again.
                v.issue_number = number
                v.reconciled = {**v.reconciled, RESPECTED: {
                    "login": login, "at": str(issue.get("closed_at") or "")}}
                return f"closed by {login}; stays closed (respect_manual_close)"
            v.issue_number = number
            v.reconciled = {**v.reconciled, "create-issue": "closed-by-person",
                            "closed-by": {"login": login,
                                          "at": str(issue.get("closed_at") or "")}}
            outcome = f"closed by {login} while the violation is open; reopened at the next scan"
    await request_repo_scan(svc, inst_id, repo_id, trigger=f"webhook:issues.{action}")
    return outcome


HANDLERS: dict[str, Handler] = {
    "installation": _installation,
    "installation_repositories": _installation_repositories,
    "installation_target": _installation_target,
    "repository": _repository,
    "push": _push,
    "issue_comment": _issue_comment,
    "issues": _issues,
    "pull_request": on_pull_request,
    "check_run": on_check_run,
    "check_suite": on_check_suite,
    "merge_group": on_merge_group,
    **{event: (lambda e: lambda svc, p: on_source_event(svc, e, p))(event)
       for event in SOURCE_EVENTS},
}


async def handle_webhook(svc: Services, delivery_id: str, event: str, action: str | None,
                         installation_id: int | None, body: bytes | None) -> str:
    if not await record_delivery(svc, delivery_id, event, action, installation_id):
        return "duplicate"
    handler = HANDLERS.get(event)
    if handler is None or body is None:
        outcome = "ignored" if event != "ping" else "pong"
    else:
        payload = json.loads(body)
        if installation_id is not None and event != "installation":
            async with svc.db() as db:
                inst = await db.get(Installation, installation_id)
                if inst is not None and not inst.active:
                    await set_outcome(svc, delivery_id, "ignored: installation inactive")
                    return "ignored: installation inactive"
        try:
            outcome = await handler(svc, payload)
        except (KeyError, TypeError, ValueError) as exc:
            # A payload without the fields we need is logged and dropped, not retried.
            outcome = f"malformed payload: {type(exc).__name__}: {exc}"
            log.warning("delivery %s (%s): %s", delivery_id, event, outcome)
    await set_outcome(svc, delivery_id, outcome)
    return outcome
