"""Jinja2 templates of the dashboard (autoescaped; nothing is loaded from a CDN)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from app.logs import mask

TEMPLATES_DIR = Path(__file__).parent / "templates"


def when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "—"
    exact = ((end or datetime.now(UTC)) - start).total_seconds()
    if exact < 1:
        return f"{max(0.0, exact) * 1000:.0f} ms"
    if exact < 60:
        return f"{exact:.1f} s"
    seconds = int(exact)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = when
# Error texts shown on pages (a failed job's, a scan's) pass the log masker's token check too.
templates.filters["redact"] = lambda text: mask(str(text), []) if text else text
templates.globals["duration"] = duration


def render_html(template: str, *, status: int = 200, headers: dict[str, str] | None = None,
                **context: Any) -> web.Response:
    html = templates.get_template(template).render(**context)
    response = web.Response(text=html, status=status, content_type="text/html",
                            charset="utf-8", headers=headers)
    # Pages hold an org's data: never cached by shared caches, never framed.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; form-action 'self' https: http:; frame-ancestors 'none'")
    return response
