"""An organization's pages: overview, repositories, one repository, the action log, config.

Each handler parses its input, asks app/services/dashboard.py, and renders. Access was
checked by the middleware (app/web/access.py) before any of them runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app.config import parse_config
from app.config.loader import ConfigError
from app.cron import parse_schedule
from app.services import activity, dashboard, fixes, notifications
from app.services.access import authorized_team
from app.services.config import CONFIG_PATH, CONFIG_REPO, config_for
from app.services.scan_requests import request_repo_scan, request_user_scan
from app.web.access import current_viewer, org_grant, page
from app.web.exports import export_response, wants_export
from app.web.state import STATE
from app.web.trend import trend_svg

STARTER_CONFIG = """\
# policy-enforcer: the org's policies. Lives at .github/config.yaml in the org.
access_control:
  # Who may open the dashboard besides the org's owners (org/team-slug).
  authorized_team: {org}/platform-team
policies:
  - name: Require AGENTS.md
    type: has_agents_md
    action: create-issue
    issue_details:
      title: "Add an AGENTS.md"
      labels: [compliance]
  - name: Require catalog-info.yaml
    type: has_catalog_info_yaml
    action: [create-issue, log-only]
  - name: catalog-info.yaml names an owner
    type: catalog_info_has_owner
    action: create-issue
  - name: Read-only workflow token
    type: correct_workflow_permissions
    action: create-issue
"""


def next_scheduled_scan(cron_expr: str, now: datetime) -> datetime | None:
    try:
        return parse_schedule(cron_expr).next_after(now)
    except ValueError:
        return None


async def overview(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    now = datetime.now(UTC)
    async with state.db()() as db:
        totals = await dashboard.totals(db, inst.id)
        by_policy = await dashboard.open_by_policy(db, inst.id)
        points = await dashboard.trend(db, inst.id, 90)
        last = await dashboard.latest_full_scan(db, inst.id)
        last_done = await dashboard.latest_full_scan(db, inst.id, ("ok", "errored"))
    return await page(
        request, "overview.html", inst=inst, totals=totals, by_policy=by_policy,
        trend_30=trend_svg(points, 30, now.date()), trend_90=trend_svg(points, 90, now.date()),
        last_scan=last, last_done=last_done,
        next_scan=next_scheduled_scan(state.settings.SCAN_CRON, now))


# ----------------------------------------------------------------------------- repositories
REPO_COLUMNS = ("full_name", "state", "open_violations", "open_policies", "visibility",
                "last_scanned_at", "html_url")


def _repo_export_row(row: dashboard.RepoRow, github_url: str) -> dict[str, Any]:
    return {"full_name": row.full_name, "state": row.state, "open_violations": row.open_count,
            "open_policies": row.open_policies, "visibility": row.visibility,
            "last_scanned_at": row.last_scanned_at.isoformat() if row.last_scanned_at else None,
            "html_url": f"{github_url}/{row.full_name}"}


async def repositories(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    query = dashboard.RepoQuery.parse(request.query)
    export = wants_export(request)
    async with state.db()() as db:
        if export:
            rows = await dashboard.all_repositories(db, inst.id, query)
            return export_response(
                export, f"{inst.account_login}-repositories", REPO_COLUMNS,
                [_repo_export_row(r, state.settings.GITHUB_URL) for r in rows])
        result = await dashboard.repositories(db, inst.id, query)
        policies = await dashboard.policy_names(db, inst.id)
    template = "repos_table.html" if request.query.get("partial") == "1" else "repos.html"
    return await page(request, template, inst=inst, result=result, policies=policies,
                      states=dashboard.REPO_STATES, github_url=state.settings.GITHUB_URL)


async def repository(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    name = request.match_info["name"]
    async with state.db()() as db:
        detail = await dashboard.repository_detail(db, inst.id, f"{inst.account_login}/{name}")
    if detail is None:
        return await page(request, "not_found.html", status=404,
                          message=f"No repository “{name}” in {inst.account_login}.")
    if wants_export(request) == "json":
        return web.json_response({
            "full_name": detail.repo.full_name, "state": detail.state,
            "last_scanned_at": detail.repo.last_scanned_at.isoformat()
            if detail.repo.last_scanned_at else None,
            "violations": [{"policy": v.policy, "state": v.state, "message": v.message,
                            "issue_number": v.issue_number} for v in detail.violations],
        }, headers={"Cache-Control": "no-store"})
    return await page(request, "repo.html", inst=inst, detail=detail,
                      github_url=state.settings.GITHUB_URL,
                      rescan=request.query.get("rescan") == "queued",
                      fixable=fixes.fixable, fix_queued=request.query.get("fix") == "queued")


async def rescan_repository(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    viewer = await current_viewer(request)
    name = request.match_info["name"]
    async with state.db()() as db:
        detail = await dashboard.repository_detail(db, inst.id, f"{inst.account_login}/{name}",
                                                   history=0)
    if detail is None:
        return await page(request, "not_found.html", status=404,
                          message=f"No repository “{name}” in {inst.account_login}.")
    await request_repo_scan(state.services(), inst.id, detail.repo.id,
                            trigger=f"user:{viewer.login}")
    name = detail.repo.full_name.split("/", 1)[1]
    raise web.HTTPSeeOther(f"/orgs/{inst.account_login}/repos/{name}?rescan=queued")


# ----------------------------------------------------------------------------- action log
ACTION_COLUMNS = ("at", "repository", "policy", "action", "status", "detail", "url")


async def action_log(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    query = activity.ActionQuery.parse(request.query)
    export = wants_export(request)
    async with state.db()() as db:
        if export:
            rows = await activity.all_actions(db, inst.id, query)
            return export_response(export, f"{inst.account_login}-actions", ACTION_COLUMNS, [
                {"at": r.at.isoformat(), "repository": r.repository, "policy": r.policy,
                 "action": r.action, "status": r.status, "detail": r.detail, "url": r.url}
                for r in rows])
        entries, total = await activity.action_log(db, inst.id, query)
        policies, actions = await activity.action_choices(db, inst.id)
    return await page(request, "actions.html", inst=inst, entries=entries, total=total,
                      query=query, policies=policies, actions=actions,
                      statuses=activity.ACTION_STATUSES,
                      pages=max(1, -(-total // query.per_page)))


# ----------------------------------------------------------------------------- config
async def config(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    inst, _ = org_grant(request)
    cfg = config_for(inst)
    errors: list[str] = []
    if inst.config_error and inst.config_status == "invalid":
        errors = inst.config_error.splitlines()
    checking = None
    if request.query.get("checking"):
        async with state.db()() as db:
            scan = await dashboard.latest_full_scan(db, inst.id, ("queued", "running"))
            checking = scan.id if scan is not None else None
    channels: list[notifications.ChannelStatus] = []
    if cfg is not None and cfg.notify:
        async with state.db()() as db:
            channels = await notifications.channel_statuses(db, inst.id, cfg)
    team_note = None
    if cfg is not None and cfg.access_control is not None and authorized_team(inst, cfg) is None:
        team_note = (f"access_control.authorized_team names a team of another organization "
                     f"({cfg.access_control.authorized_team}); only owners of "
                     f"{inst.account_login} may use this dashboard.")
    return await page(
        request, "config.html", inst=inst, cfg=cfg, errors=errors, team_note=team_note,
        config_repo=CONFIG_REPO, config_path=CONFIG_PATH, checking=checking, channels=channels,
        starter=STARTER_CONFIG.format(org=inst.account_login),
        github_url=state.settings.GITHUB_URL, starter_valid=_valid(STARTER_CONFIG))


def _valid(text: str) -> bool:
    try:
        parse_config(text.format(org="example"))
    except ConfigError:
        return False
    return True


async def check_config_again(request: web.Request) -> web.StreamResponse:
    """The onboarding's "check again": a full scan, which reads the config first."""
    state = request.app[STATE]
    inst, _ = org_grant(request)
    viewer = await current_viewer(request)
    await request_user_scan(state.services(), inst.id, viewer.login)
    raise web.HTTPSeeOther(f"/orgs/{inst.account_login}/config?checking=1")
