"""/badge/{org}/{name}.svg: a public repository's compliance badge, when the org's config
sets `public_badges: true`. Anything else is a 404 that says nothing about why (a private
repository's name must not be confirmed)."""

from __future__ import annotations

from aiohttp import web
from markupsafe import escape

from app.services import dashboard
from app.services.config import config_for
from app.web.access import find_installation
from app.web.state import STATE

COLORS = {"compliant": "#2da44e", "violating": "#cf222e", "errored": "#9a6700",
          "not-scanned": "#6e7781", "exempt": "#6e7781"}


def badge_svg(label: str, message: str, color: str) -> str:
    # Text width is estimated at ~6.5 px a character (Verdana 11 px, as shields.io).
    lw, mw = 10 + int(len(label) * 6.5), 10 + int(len(message) * 6.5)
    w = lw + mw
    label, message = str(escape(label)), str(escape(message))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" '
            f'aria-label="{label}: {message}"><title>{label}: {message}</title>'
            f'<rect width="{lw}" height="20" fill="#555"/>'
            f'<rect x="{lw}" width="{mw}" height="20" fill="{color}"/>'
            f'<g fill="#fff" text-anchor="middle" font-family="Verdana,sans-serif" '
            f'font-size="11"><text x="{lw / 2}" y="14">{label}</text>'
            f'<text x="{lw + mw / 2}" y="14">{message}</text></g></svg>')


async def badge(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    org, name = request.match_info["org"], request.match_info["name"]
    inst = await find_installation(state, org)
    cfg = config_for(inst) if inst is not None else None
    if inst is None or cfg is None or not cfg.public_badges:
        raise web.HTTPNotFound()
    async with state.db()() as db:
        detail = await dashboard.repository_detail(db, inst.id, f"{inst.account_login}/{name}",
                                                   history=0)
    if detail is None or detail.repo.visibility != "public" or not detail.repo.present:
        raise web.HTTPNotFound()
    open_count = sum(1 for v in detail.violations if v.state == "open")
    message = {"violating": f"{open_count} violation{'s' if open_count != 1 else ''}",
               "not-scanned": "not scanned", "exempt": "not enforced"}.get(detail.state,
                                                                          detail.state)
    return web.Response(
        text=badge_svg(state.settings.APP_NAME, message, COLORS.get(detail.state, "#6e7781")),
        content_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=300"})
