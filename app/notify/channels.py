"""A `notify:` channel made ready to send: its URL and key read from the App's environment.

The config lives in the org's `.github` repository, which may be public, so it names
environment variables instead of holding secrets. Only variables named NOTIFY_… are read
(the config model checks the form; the App's own NOTIFY_ settings are not readable
either), and with NOTIFY_ENV_PER_ORG only NOTIFY_<ORG>__… of the config's own org.
Messages about a missing variable name it, never show a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.config.models import NotifyChannel, OrgConfig
from app.settings import Settings

# The App's own settings that start with NOTIFY_: not secrets, and not for a config to name.
SETTING_NAMES = frozenset(n for n in Settings.model_fields if n.startswith("NOTIFY_"))
# Shorter values are not masked in logs (they would mask ordinary words).
MIN_MASKED = 8


class ChannelUnavailable(Exception):
    """The channel cannot send now (a variable is missing or not allowed); the text names
    the variable and never holds a value."""


@dataclass(frozen=True)
class ChannelTarget:
    """Where and how a channel's messages go. `url` and `secret` are secrets: never log them."""

    name: str
    type: str
    url: str
    url_is_secret: bool
    secret: bytes | None

    def redact(self, text: str) -> str:
        """`text` without this channel's URL (and its path, which is what makes a Slack
        webhook URL a credential) or key."""
        hidden = [self.url] if self.url_is_secret else []
        if self.url_is_secret:
            path = urlsplit(self.url).path
            if len(path) > 1:
                hidden.append(path)
        if self.secret:
            hidden.append(self.secret.decode("utf-8", errors="replace"))
        for value in sorted(hidden, key=len, reverse=True):
            if len(value) >= 4:
                text = text.replace(value, "***")
        return text


def org_prefix(org: str) -> str:
    """NOTIFY_<ORG>__: the variables an org may name when NOTIFY_ENV_PER_ORG is on. Two
    underscores end the login (which holds no `_` nor `--`), so no org's prefix is the
    start of another's: `acme` may not name `acme-corp`'s NOTIFY_ACME_CORP__… ."""
    return "NOTIFY_" + re.sub(r"[^A-Z0-9]", "_", org.upper()) + "__"


def variable_problem(variable: str, org: str, settings: Settings,
                     environ: Mapping[str, str]) -> str | None:
    """Why the variable cannot be used (None: it can)."""
    if variable in SETTING_NAMES:
        return f"{variable} is a setting of the App, not a channel's secret"
    if settings.NOTIFY_ENV_PER_ORG and not variable.startswith(org_prefix(org)):
        return (f"{variable} is not allowed: this deployment lets {org} use only variables "
                f"named {org_prefix(org)}…")
    if not environ.get(variable):
        return f"the environment variable {variable} is not set in the App's worker"
    return None


def channel_problems(channel: NotifyChannel, org: str, settings: Settings,
                     environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    names = [v for v in (channel.url_env, channel.secret_env) if v is not None]
    return [p for v in names if (p := variable_problem(v, org, settings, env)) is not None]


def resolve_target(channel: NotifyChannel, org: str, settings: Settings,
                   environ: Mapping[str, str] | None = None) -> ChannelTarget:
    """The channel's URL and key, or ChannelUnavailable naming what is missing."""
    env = os.environ if environ is None else environ
    problems = channel_problems(channel, org, settings, env)
    if problems:
        raise ChannelUnavailable("; ".join(problems))
    url = env[channel.url_env].strip() if channel.url_env else (channel.url or "")
    secret = env[channel.secret_env].encode() if channel.secret_env else None
    return ChannelTarget(name=channel.name, type=channel.type, url=url,
                  url_is_secret=channel.url_env is not None, secret=secret)


def channel_notes(cfg: OrgConfig, org: str, settings: Settings,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per channel that cannot send, for the config page (as config notes)."""
    return [f"notify channel {c.name!r}: {problem}; its messages wait (and are given up "
            f"after {settings.NOTIFY_GIVE_UP_HOURS:g} h)"
            for c in cfg.notify for problem in channel_problems(c, org, settings, environ)]


def describe_destination(channel: NotifyChannel) -> str:
    """Where the channel sends, as the dashboard may show it (never a secret URL)."""
    if channel.url_env is not None:
        return f"URL from {channel.url_env}"
    return urlsplit(channel.url or "").netloc


def masked_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the NOTIFY_… variables, for the log formatters to mask."""
    env = os.environ if environ is None else environ
    return [v for k, v in env.items()
            if k.startswith("NOTIFY_") and k not in SETTING_NAMES and len(v) >= MIN_MASKED]
