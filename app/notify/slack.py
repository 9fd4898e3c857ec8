"""The Slack incoming-webhook message for a batch: a summary line and a list of events.

Slack shows a digest best as counts plus the first lines; the full list is on the
dashboard (or in a webhook channel). Text is escaped as Slack's mrkdwn requires.
"""

from __future__ import annotations

from typing import Any

from app.notify.events import Batch, Event

# Lines listed in one message; the rest are counted ("…and 12 more").
MAX_LINES = 20
# Slack's limit for a section's text is 3,000 characters.
MAX_SECTION = 2900
MAX_MESSAGE_LINE = 150


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _line(e: Event, github_url: str) -> str:
    icon = ":red_circle:" if e.event == "opened" else ":white_check_mark:"
    verb = "failing in" if e.event == "opened" else "resolved in"
    first = next((ln.strip() for ln in e.message.splitlines() if ln.strip()), "")
    if len(first) > MAX_MESSAGE_LINE:
        first = first[:MAX_MESSAGE_LINE - 1] + "…"
    repo = f"<{github_url}/{e.repository}|{_escape(e.repository)}>"
    return f"{icon} *{_escape(e.policy)}* {verb} {repo}" + (f": {_escape(first)}" if first else "")


def summary(batch: Batch) -> str:
    parts = []
    if opened := batch.count("opened"):
        parts.append(f"{_plural(opened, 'violation')} opened")
    if resolved := batch.count("resolved"):
        parts.append(f"{_plural(resolved, 'violation')} resolved")
    return f"Policy enforcer · {batch.org}: " + ", ".join(parts)


def slack_payload(batch: Batch, *, github_url: str, dashboard_url: str | None) -> dict[str, Any]:
    lines = [_line(e, github_url) for e in batch.events[:MAX_LINES]]
    text = ""
    for line in lines:
        if len(text) + len(line) + 1 > MAX_SECTION:
            break
        text += line + "\n"
    shown = text.count("\n")
    more = len(batch.events) - shown
    if more:
        text += f"…and {more} more"
        if dashboard_url:
            text += f" on the <{dashboard_url}|dashboard>"
    head = _escape(summary(batch))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text.rstrip("\n")}},
    ]
    if dashboard_url and not more:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{dashboard_url}|Open the dashboard>"}]})
    return {"text": head, "blocks": blocks}
