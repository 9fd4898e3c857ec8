"""The job monitor (/jobs): queued, running, recent and failed jobs, with Retry.

Operators only (ADMIN_LOGINS see every installation's jobs; an org owner sees those of the
installations they own), enforced by app/web/access.py.
"""

from __future__ import annotations

from aiohttp import web

from app.services import job_monitor, paging
from app.web.access import OPERATOR_SCOPE, current_viewer, page
from app.web.state import STATE

QUEUED_SHOWN = 100
RECENT_SHOWN = 100


async def jobs(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    scope = request[OPERATOR_SCOPE]
    redis = state.arq()
    queued, queued_total = await job_monitor.queued(redis, QUEUED_SHOWN * 5)
    queued = [j for j in queued if scope.covers(j.installation_id)][:QUEUED_SHOWN]
    running = [r for r in await job_monitor.running(redis) if scope.covers(r.installation_id)]
    recent = [r for r in await job_monitor.recent(redis) if scope.covers(r.installation_id)]
    async with state.db()() as db:
        failed = await job_monitor.failures(
            db, None if scope.everything else scope.installations)
    return await page(
        request, "jobs.html", queued=queued, queued_total=queued_total if scope.everything
        else None, running=running,
        succeeded=[r for r in recent if r.outcome == "success"][:RECENT_SHOWN],
        retried=[r for r in recent if r.outcome in ("retry", "failed", "cancelled")]
        [:RECENT_SHOWN],
        failed=failed, failure_args=job_monitor.failure_args,
        retried_id=request.query.get("retried"), everything=scope.everything)


async def retry_job(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    scope = request[OPERATOR_SCOPE]
    viewer = await current_viewer(request)
    failure_id = paging.path_id(request.match_info["failure_id"])
    if failure_id is None:
        raise web.HTTPNotFound()
    async with state.db()() as db, db.begin():
        new_id = await job_monitor.retry(db, state.arq(), failure_id,
                                         None if scope.everything else scope.installations,
                                         viewer.login)
    if new_id is None:
        return await page(request, "not_found.html", status=404,
                          message="No such failed job, or it cannot be retried (its "
                                  "arguments were too large to keep).")
    raise web.HTTPSeeOther(f"/jobs?retried={failure_id}#failed")
