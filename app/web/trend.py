"""The compliance trend as an inline SVG, drawn on the server (no script, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

from app.db.models import ComplianceDay

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 12, 12, 28


def trend_svg(points: Sequence[ComplianceDay], days: int, today: date) -> Markup:
    """Compliance % per day over the last `days` days; days without a scan are gaps."""
    first = today - timedelta(days=days - 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: date) -> float:
        return LEFT + plot_w * (day - first).days / max(1, days - 1)

    def y(percent: float) -> float:
        return TOP + plot_h * (1 - percent / 100)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" class="trend" aria-label="Compliance over the last {days} days">',
             f"<title>Compliance over the last {days} days</title>"]
    for level in (0, 50, 100):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" '
                     f'y2="{y(level):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(level) + 4:.1f}" text-anchor="end">'
                     f"{level}%</text>")
    for label_day, anchor in ((first, "start"), (today, "end")):
        parts.append(f'<text x="{x(label_day):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
                     f"{label_day.isoformat()}</text>")
    segments: list[list[tuple[float, float, ComplianceDay]]] = []
    previous: date | None = None
    for point in points:
        day = date.fromisoformat(point.day)
        if day < first or day > today or not point.evaluated:
            continue
        pct = 100.0 * point.compliant / point.evaluated
        if previous is None or (day - previous).days > 1:
            segments.append([])
        segments[-1].append((x(day), y(pct), point))
        previous = day
    for segment in segments:
        if len(segment) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in segment)
            parts.append(f'<polyline points="{path}" class="line"/>')
        for px, py, point in segment:
            pct = 100.0 * point.compliant / point.evaluated
            tip = escape(f"{point.day}: {pct:.1f}% ({point.compliant}/{point.evaluated} "
                         f"compliant, {point.open_violations} open violations)")
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" class="dot">'
                         f"<title>{tip}</title></circle>")
    if not segments:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
                     'class="empty">No full scan finished in this period yet.</text>')
    parts.append("</svg>")
    # Only numbers, dates and escape()d text are interpolated above.
    return Markup("".join(parts))  # noqa: S704
