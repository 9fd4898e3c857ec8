"""`notify:` channels: where a message goes when violations open or resolve."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from app.config.fields import Model, describe_value
from app.config.fields import config_error as _error

__all__ = ["MAX_DIGEST_MINUTES", "NOTIFY_EVENTS", "NotifyChannel"]

# `notify:` — the events a channel can be told about, and its limits.
NOTIFY_EVENTS: tuple[str, ...] = ("opened", "resolved")
MAX_DIGEST_MINUTES = 7 * 24 * 60
_CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Only variables named NOTIFY_… are read: a config (often in a public repository) must not
# be able to send the App's own secrets (PRIVATE_KEY, WEBHOOK_SECRET, …) to a URL it names.
_NOTIFY_ENV_RE = re.compile(r"NOTIFY_[A-Z0-9_]+")


def _notify_env(value: str | None, key: str) -> str | None:
    if value is not None and _NOTIFY_ENV_RE.fullmatch(value) is None:
        raise _error("notify_env", f"{key} must name an environment variable of the App that "
                                   f"starts with NOTIFY_ (upper-case letters, digits and _), "
                                   f"got {value!r}")
    return value


class NotifyChannel(Model):
    """One entry of `notify:`: where a message goes when violations open or resolve."""

    name: str
    type: Literal["slack", "webhook"]
    # A URL that is no secret (webhook only), or the environment variable that holds it
    # (a Slack incoming-webhook URL is itself the credential). Exactly one of the two.
    url: str | None = None
    url_env: str | None = None
    # webhook: the environment variable holding the HMAC-SHA256 key every body is signed with.
    secret_env: str | None = None
    # Events wait this long after the oldest unsent one, then go as one message (0: each
    # within a minute).
    digest_minutes: int = Field(default=0, ge=0, le=MAX_DIGEST_MINUTES)
    events: tuple[Literal["opened", "resolved"], ...] = ("opened", "resolved")
    # Only these policies (by name); None: every policy.
    policies: tuple[str, ...] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if _CHANNEL_NAME_RE.fullmatch(value) is None:
            raise _error("channel_name", "a channel name is 1-64 letters, digits, '-', '_' or "
                                         f"'.', starting with a letter or digit, got {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import SplitResult, urlsplit

        parts: SplitResult | None
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            parts, host = None, None
        if parts is None or parts.scheme not in ("https", "http") or not host \
                or len(value) > 2048 or any(c.isspace() for c in value):
            raise _error("notify_url", "url must be an https:// URL (http:// only where the "
                                       "App's operator allows it), got " + describe_value(value))
        if parts.username is not None or parts.password is not None:
            raise _error("notify_url", "url must not carry a user or password: put secrets in "
                                       "an environment variable and name it with url_env")
        return value

    @field_validator("url_env")
    @classmethod
    def _url_env(cls, value: str | None) -> str | None:
        return _notify_env(value, "url_env")

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str | None) -> str | None:
        return _notify_env(value, "secret_env")

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise _error("empty_events", "events is empty; give opened, resolved or both")
        if len(set(value)) != len(value):
            raise _error("duplicate_event", "events lists an event more than once")
        return value

    @field_validator("policies")
    @classmethod
    def _policies(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise _error("empty_policies", "policies is empty; leave it out to hear about "
                                           "every policy")
        return value

    @model_validator(mode="after")
    def _shape(self) -> NotifyChannel:
        if self.type == "slack" and self.url is not None:
            raise _error("slack_url", "a Slack incoming-webhook URL is a secret and must not be "
                                      "written in the config: set it in an environment "
                                      "variable of the App (NOTIFY_…) and name that with "
                                      "url_env")
        if (self.url is None) == (self.url_env is None):
            raise _error("notify_target", "give exactly one of url and url_env")
        if self.type == "slack" and self.secret_env is not None:
            raise _error("slack_secret", "secret_env is for type webhook (Slack does not "
                                         "check signatures)")
        if self.type == "webhook" and self.secret_env is None:
            raise _error("webhook_secret", "a webhook channel needs secret_env: the environment "
                                           "variable holding the key its bodies are signed "
                                           "with (HMAC-SHA256)")
        return self

    def wants(self, event: str, policy: str) -> bool:
        return event in self.events and (self.policies is None or policy in self.policies)
