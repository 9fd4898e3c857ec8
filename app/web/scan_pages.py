"""Scans: history, one scan with live progress (Server-Sent Events), and Scan Now."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from app.db.models import Scan
from app.services import activity, paging
from app.services.scan_requests import request_user_scan
from app.web.access import current_viewer, org_grant, page
from app.web.state import STATE

# How often a live scan is read again for its viewers, and how long one stream lasts (the
# browser's EventSource reconnects by itself).
POLL_SECONDS = 1.0
STREAM_SECONDS = 600.0
LIVE = ("queued", "running")


def progress(scan: Scan) -> dict[str, Any]:
    return {"id": scan.id, "status": scan.status, "total": scan.total, "done": scan.done,
            "errored": scan.errored, "waiting": scan.waiting, "detail": scan.detail,
            "opened": scan.violations_opened, "resolved": scan.violations_resolved,
            "filing": filing_text(scan), "live": scan.status in LIVE}


def filing_text(scan: Scan) -> str:
    """"filed 640 of 2,000; next batch at 14:05 UTC", or "" when the scan filed nothing."""
    if not scan.filing_total:
        return ""
    text = f"filed {scan.filing_done:,} of {scan.filing_total:,}"
    if scan.filing_done < scan.filing_total and scan.filing_next_at is not None:
        text += f"; next batch at {scan.filing_next_at:%H:%M} UTC"
    return text


async def scans(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    page_no = paging.positive_number(request.query.get("page"), 1)
    async with state.db()() as db:
        rows, total = await activity.scans(db, inst.id, page_no)
    return await page(request, "scans.html", inst=inst, rows=rows, total=total, page_no=page_no,
                      pages=max(1, -(-total // paging.PER_PAGE)))


async def scan_detail(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    scan = await _scan(request, inst.id)
    if scan is None:
        return await page(request, "not_found.html", status=404, message="No such scan.")
    if request.query.get("format") == "json":
        return web.json_response(progress(scan), headers={"Cache-Control": "no-store"})
    repository = None
    if scan.repository_id is not None:
        async with state.db()() as db:
            from app.db.models import Repository

            repo = await db.get(Repository, scan.repository_id)
            repository = repo.full_name if repo is not None else None
    return await page(request, "scan.html", inst=inst, scan=scan, repository=repository,
                      live=scan.status in LIVE, filing=filing_text(scan),
                      progress_json=json.dumps(progress(scan)))


async def _scan(request: web.Request, installation_id: int) -> Scan | None:
    scan_id = paging.path_id(request.match_info["scan_id"])
    if scan_id is None:
        return None
    async with request.app[STATE].db()() as db:
        return await activity.scan(db, installation_id, scan_id)


async def scan_events(request: web.Request) -> web.StreamResponse:
    """`progress` events while the scan changes, then `done`; no fixed waits anywhere."""
    inst, _ = org_grant(request)
    scan = await _scan(request, inst.id)
    if scan is None:
        raise web.HTTPNotFound()
    deadline = time.monotonic() + STREAM_SECONDS
    async with sse_response(request, headers={"Cache-Control": "no-store"}) as stream:
        last: dict[str, Any] | None = None
        while stream.is_connected() and time.monotonic() < deadline:
            current = await _scan(request, inst.id)
            if current is None:
                break
            now = progress(current)
            if now != last:
                await stream.send(json.dumps(now), event="progress")
                last = now
            if not now["live"]:
                await stream.send(json.dumps(now), event="done")
                break
            await asyncio.sleep(POLL_SECONDS)
    return stream


async def scan_now(request: web.Request) -> web.StreamResponse:
    """Queue a full scan (or join the one queued or running) and land on its progress."""
    state = request.app[STATE]
    inst, _ = org_grant(request)
    viewer = await current_viewer(request)
    scan_id, _queued = await request_user_scan(state.services(), inst.id, viewer.login)
    raise web.HTTPSeeOther(f"/orgs/{inst.account_login}/scans/{scan_id}")
