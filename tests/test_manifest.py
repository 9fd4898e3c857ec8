"""app.yml lists exactly what the code uses."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from app.services.webhooks import HANDLERS
from app.sources import SOURCES, stale_events
from app.sources.base import Needs

MANIFEST = YAML(typ="safe").load(Path(__file__).parents[1] / "app.yml")
ALWAYS_SENT = {"installation", "installation_repositories", "installation_target"}


def test_events_match_the_handlers() -> None:
    assert set(MANIFEST["default_events"]) | ALWAYS_SENT == set(HANDLERS)
    assert not ALWAYS_SENT & set(MANIFEST["default_events"])


def test_permissions_are_the_ones_the_code_needs() -> None:
    assert MANIFEST["default_permissions"] == {
        "contents": "write", "metadata": "read", "issues": "write", "administration": "write",
        "organization_administration": "read", "members": "read", "checks": "write",
        "pull_requests": "write", "organization_custom_properties": "read"}
    assert MANIFEST["hook_attributes"]["url"].endswith("/api/github/webhooks")


def test_every_source_event_is_subscribed() -> None:
    """A source goes stale on events the App receives: a change is enforced within seconds."""
    events = stale_events(Needs(sources=frozenset(SOURCES)))
    subscribed = set(MANIFEST["default_events"]) | ALWAYS_SENT
    assert {e.split(".", 1)[0] for e in events} <= subscribed
    assert {e.split(".", 1)[0] for e in events} <= set(HANDLERS)
