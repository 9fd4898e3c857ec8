"""Links into the dashboard, for what the App writes on GitHub (issues, checks, comments)."""

from __future__ import annotations

from urllib.parse import quote


def repo_page_url(public_url: str | None, full_name: str) -> str | None:
    """The repository's dashboard page, or None when PUBLIC_URL is not set (GitHub refuses
    a check run's details_url that is not an absolute URL)."""
    if not public_url:
        return None
    org, _, name = full_name.partition("/")
    return f"{public_url.rstrip('/')}/orgs/{quote(org, safe='')}/repos/{quote(name, safe='')}"
