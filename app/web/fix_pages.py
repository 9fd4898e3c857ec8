"""The repository page's "Fix now": a maintainer's one-shot fix, queued as a job (the web
process never calls GitHub); app/services/fixes.py runs it and the action log shows it."""

from __future__ import annotations

from aiohttp import web

from app.services import dashboard, fixes, paging
from app.web.access import current_viewer, org_grant, page
from app.web.state import STATE


async def fix_now(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    viewer = await current_viewer(request)
    name = request.match_info["name"]
    form = await request.post()
    violation_id = paging.path_id(str(form.get("violation", "")))
    async with state.db()() as db:
        detail = await dashboard.repository_detail(db, inst.id, f"{inst.account_login}/{name}",
                                                   history=0)
    if detail is None:
        return await page(request, "not_found.html", status=404,
                          message=f"No repository “{name}” in {inst.account_login}.")
    found = [v for v in detail.violations if v.id == violation_id]
    if not found or found[0].state != "open" or not fixes.fixable(found[0].policy_type):
        return await page(request, "not_found.html", status=404,
                          message=f"Nothing to fix: no open violation with an automatic "
                                  f"fix by that id in {detail.repo.full_name}.")
    await fixes.request_fix(state.services(), inst.id, found[0].id, viewer.login)
    name = detail.repo.full_name.split("/", 1)[1]
    raise web.HTTPSeeOther(f"/orgs/{inst.account_login}/repos/{name}?fix=queued")
