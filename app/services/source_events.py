"""Webhooks that make a data source stale (branch rules, collaborators, security settings):
the repository is scanned again within seconds when an enabled policy reads that source.

Which events matter is the sources' own declaration (`Source.stale_on`); an event no
enabled policy depends on is recorded and ignored.
"""

from __future__ import annotations

from typing import Any

from app.db.models import Installation, Repository
from app.services.config import config_for
from app.services.context import Services
from app.services.judging import needs_of, scanned
from app.services.scan_requests import request_full_scan, request_repo_scan
from app.services.store import ensure_installation, upsert_repository
from app.sources import Needs, stale_events

# Events only a source needs (the others also have handlers of their own).
SOURCE_EVENTS = ("branch_protection_rule", "repository_ruleset", "member", "team",
                 "security_and_analysis", "custom_property_values")


def _needs(inst: Installation | None) -> Needs:
    cfg = config_for(inst) if inst is not None else None
    # Targeting counts too (custom properties decide where a policy applies).
    return needs_of(cfg) if cfg is not None else Needs()


async def on_source_event(svc: Services, event: str, p: dict[str, Any]) -> str:
    inst_id = int(p["installation"]["id"])
    action = str(p.get("action") or "")
    async with svc.db() as db, db.begin():
        inst = await ensure_installation(db, inst_id, p.get("organization"),
                                         authoritative=False)
        watched = stale_events(_needs(inst))
        if event not in watched and f"{event}.{action}" not in watched:
            return "ignored: no enabled policy reads what this event changes"
        data = p.get("repository")
        repo = None
        if isinstance(data, dict):
            repo = await db.get(Repository, int(data["id"])) or \
                await upsert_repository(db, inst_id, data)
    trigger = f"webhook:{event}.{action}" if action else f"webhook:{event}"
    if repo is None:
        # Organization-wide (an organization ruleset, a team's access everywhere): every
        # repository may be affected.
        await request_full_scan(svc, inst_id, trigger)
        return "full scan queued"
    if not scanned(repo, config_for(inst)):
        return "ignored: repository not scanned"
    await request_repo_scan(svc, inst_id, repo.id, trigger=trigger)
    return "scan queued"
