"""Installation sync: the App's installations as GitHub lists them, whatever events we missed.

A missed `installation.created` would otherwise leave an org unscanned for ever: the nightly
scan only fans out over installations it knows. `GET /app/installations` (the App's JWT) is
read at worker start and before each nightly scan: installations missing here are added
and scanned, ones GitHub no longer lists are marked gone, suspensions are mirrored, and a
renamed account is recorded (its config is read under the new login from then on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.db.models import Installation, utcnow
from app.services.context import Services
from app.services.scan_requests import request_full_scan
from app.services.store import ensure_installation

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    listed: int = 0
    added: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    renamed: list[int] = field(default_factory=list)
    reactivated: list[int] = field(default_factory=list)


async def rename_account(svc: Services, installation_id: int, login: str,
                         account_type: str | None = None) -> bool:
    """Record the account's new login; True when it changed."""
    async with svc.db() as db, db.begin():
        inst = await ensure_installation(db, installation_id,
                                         {"login": login, "type": account_type or
                                          "Organization"}, authoritative=False)
        return _rename(inst, login, account_type)


def _rename(inst: Installation, login: str, account_type: str | None) -> bool:
    if account_type:
        inst.account_type = account_type
    if not inst.account_login or inst.account_login == login:
        inst.account_login = login
        return False
    log.warning("installation %s: account %s was renamed to %s", inst.id, inst.account_login,
                login)
    inst.renamed_from, inst.account_login = inst.account_login, login
    return True


async def sync_installations(svc: Services) -> SyncResult:
    """Raises IntegrityError when an installation event's job adds the same row meanwhile;
    the job then runs again."""
    result = SyncResult()
    listed: dict[int, dict[str, Any]] = {}
    async for item in svc.github.app().getiter("/app/installations?per_page=100"):
        listed[int(item["id"])] = dict(item)
    result.listed = len(listed)
    scan: list[int] = []
    async with svc.db() as db, db.begin():
        known = {i.id: i for i in await db.scalars(select(Installation))}
        for inst_id, item in listed.items():
            account = item.get("account") or {}
            login = str(account.get("login") or "")
            kind = str(account.get("type") or "Organization")
            inst = known.get(inst_id)
            if inst is None:
                inst = await ensure_installation(db, inst_id, {"login": login, "type": kind})
                result.added.append(inst_id)
            elif login and _rename(inst, login, kind):
                result.renamed.append(inst_id)
            suspended = item.get("suspended_at") is not None
            was_active = inst.active if inst_id in known else False
            inst.suspended, inst.active, inst.gone_at = suspended, not suspended, None
            if inst.active and not was_active and inst_id in known:
                result.reactivated.append(inst_id)
            if inst.active and (inst_id in result.added or inst_id in result.reactivated
                                or inst_id in result.renamed):
                scan.append(inst_id)
        for inst_id, inst in known.items():
            if inst_id not in listed and (inst.active or inst.gone_at is None):
                inst.active, inst.gone_at = False, utcnow()
                result.gone.append(inst_id)
    for inst_id in scan:
        await request_full_scan(svc, inst_id, "sync:installations")
    if result.added or result.gone or result.renamed or result.reactivated:
        log.warning("installation sync: %d listed; added %s, gone %s, renamed %s, "
                    "reactivated %s", result.listed, result.added, result.gone,
                    result.renamed, result.reactivated)
    return result
