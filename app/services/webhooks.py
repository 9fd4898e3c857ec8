"""Turn a verified webhook delivery into state changes and jobs (runs in the worker)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.db.models import Installation, Repository, WebhookDelivery
from app.services.commands import parse_commands
from app.services.config import CONFIG_PATH, CONFIG_REPO
from app.services.context import Services
from app.services.scan_requests import request_full_scan, request_repo_scan
from app.services.store import ensure_installation, mark_removed, upsert_repository

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[Services, Payload], Awaitable[str]]


async def record_delivery(svc: Services, delivery_id: str, event: str, action: str | None,
                          installation_id: int | None) -> bool:
    """Durably record the delivery; False when this id was already handled (a redelivery).

    A delivery whose job died half-way is still "received" and is handled again: arq
    delivers at least once, and every handler is idempotent.
    """
    try:
        async with svc.db() as db, db.begin():
            db.add(WebhookDelivery(delivery_id=delivery_id, event=event, action=action,
                                   installation_id=installation_id, outcome="received"))
    except IntegrityError:
        async with svc.db() as db:
            row = await db.get(WebhookDelivery, delivery_id)
            return row is not None and row.outcome == "received"
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
    return "installation inactive" if not active else "recorded"


async def _installation_repositories(svc: Services, p: Payload) -> str:
    inst_id = int(p["installation"]["id"])
    added = p.get("repositories_added") or []
    removed = p.get("repositories_removed") or []
    async with svc.db() as db, db.begin():
        await ensure_installation(db, inst_id, p["installation"].get("account"))
        ids = [(await upsert_repository(db, inst_id, r)).id for r in added]
        await mark_removed(db, [int(r["id"]) for r in removed])
    for rid in ids:
        await request_repo_scan(svc, inst_id, rid, trigger="webhook:installation_repositories")
    return f"{len(ids)} added, {len(removed)} removed"


RESCAN_REPOSITORY_ACTIONS = {"created", "edited", "renamed", "unarchived", "publicized",
                             "privatized", "transferred"}


async def _repository(svc: Services, p: Payload) -> str:
    action = str(p.get("action"))
    inst_id = int(p["installation"]["id"])
    data = p["repository"]
    async with svc.db() as db, db.begin():
        inst = await ensure_installation(db, inst_id, _account(p), authoritative=False)
        if action == "deleted":
            await mark_removed(db, [int(data["id"])])
            return "repository removed"
        if action == "transferred" and inst.account_login and \
                data["owner"]["login"].lower() != inst.account_login.lower():
            await mark_removed(db, [int(data["id"])])
            return "repository transferred away"
        repo = await upsert_repository(db, inst_id, data)
        scannable = not (repo.archived or repo.fork)
    if action in RESCAN_REPOSITORY_ACTIONS and scannable:
        await request_repo_scan(svc, inst_id, int(data["id"]),
                                trigger=f"webhook:repository.{action}")
        return "scan queued"
    return "recorded"


def _touches_config(p: Payload) -> bool:
    for commit in p.get("commits") or []:
        for key in ("added", "modified", "removed"):
            if CONFIG_PATH in (commit.get(key) or []):
                return True
    head = p.get("head_commit") or {}
    return any(CONFIG_PATH in (head.get(k) or []) for k in ("added", "modified", "removed"))


async def _push(svc: Services, p: Payload) -> str:
    inst_id = int(p["installation"]["id"])
    data = p["repository"]
    branch = data.get("default_branch") or data.get("master_branch")
    if p.get("ref") != f"refs/heads/{branch}" or p.get("deleted"):
        return "ignored: not the default branch"
    outcome = []
    if data.get("name") == CONFIG_REPO and _touches_config(p):
        await enqueue_full_scan(svc, inst_id, "webhook:push:config")
        outcome.append("config reload and full scan queued")
    async with svc.db() as db, db.begin():
        await ensure_installation(db, inst_id, _account(p), authoritative=False)
        existing = await db.get(Repository, int(data["id"]))
        # A push payload's repository has `owner` as an object and no `visibility` in
        # older shapes; only the fields upsert understands are used.
        repo = await upsert_repository(db, inst_id, data) if existing is None else existing
        scannable = not (repo.archived or repo.fork) and repo.present
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
            _job_id=f"command:{comment['id']}:{name}")
    return f"{len(commands[:5])} command(s) queued"


HANDLERS: dict[str, Handler] = {
    "installation": _installation,
    "installation_repositories": _installation_repositories,
    "repository": _repository,
    "push": _push,
    "issue_comment": _issue_comment,
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
