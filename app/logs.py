"""Logging set-up. Secrets never reach the output: the formatter masks the configured
secrets and anything shaped like a GitHub token, in messages and tracebacks alike.

LOG_FORMAT=text (default): `time LEVEL logger: message`, one line per record.
LOG_FORMAT=json: one JSON object per line with time, level, logger, message, `exc_info` (the
traceback) when there is one, and the fields bound with `log_context` in the current task
(delivery_id, job_id, installation_id), when known.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from app.notify.channels import masked_values
from app.settings import Settings

# GitHub token prefixes: installation (ghs_), user-to-server (ghu_), OAuth (gho_), PAT...
TOKEN_RE = re.compile(r"\b(gh[pousr]_)[A-Za-z0-9_]{16,}|\bgithub_pat_[A-Za-z0-9_]{20,}")


def mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    # Every token shape contains one of these; the substring test is 5x cheaper than the
    # regex search on the one line per webhook delivery that contains neither.
    if "gh" not in text and "github_pat_" not in text:
        return text
    return TOKEN_RE.sub(lambda m: (m.group(1) or "github_pat_") + "***", text)


def masked_strings(secrets: list[str]) -> list[str]:
    """What `mask` replaces for these secrets, longest first: each secret of 4 characters or
    more, and each line of 16 or more of a multi-line one (a PEM key printed in pieces)."""
    pieces = [line for s in secrets for line in s.splitlines() if len(line) >= 16]
    return sorted({s for s in secrets if len(s) >= 4} | set(pieces), key=len, reverse=True)


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self._secrets = masked_strings(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record), self._secrets)


# --- fields bound to the current task -----------------------------------------------------

_EMPTY: dict[str, Any] = {}
# Replaced, never mutated: a task's binding cannot leak into the tasks it started before.
_fields: ContextVar[dict[str, Any]] = ContextVar("policy_enforcer_log_fields", default=_EMPTY)


class log_context:  # lower case: used like contextlib.suppress
    """`with log_context(job_id=..., installation_id=...):` every record logged by this task
    (and the tasks it starts) inside the block carries these fields; the previous binding
    is restored after. A None value is left out ("not known"). Cheap: one ContextVar set."""

    __slots__ = ("_new", "_token")

    def __init__(self, **fields: Any) -> None:
        self._new = {k: v for k, v in fields.items() if v is not None}
        self._token: Token[dict[str, Any]] | None = None

    def __enter__(self) -> log_context:
        current = _fields.get()
        self._token = _fields.set({**current, **self._new} if current else self._new)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._token is not None:
            _fields.reset(self._token)
            self._token = None


def bind_log_fields(**fields: Any) -> None:
    """Add fields to the current binding, until the enclosing `log_context` block ends (or,
    outside one, for the rest of the current task). None values are left out."""
    new = {k: v for k, v in fields.items() if v is not None}
    if new:
        _fields.set({**_fields.get(), **new})


def log_fields() -> dict[str, Any]:
    """The fields bound to the current task (do not mutate)."""
    return _fields.get()


class ContextFilter(logging.Filter):
    """Adds the fields bound with `log_context` to every record it sees (as attributes; a
    field the call passed itself in `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields.get()
        if fields:
            attrs = record.__dict__
            for key, value in fields.items():
                attrs.setdefault(key, value)
        return True


# --- JSON ---------------------------------------------------------------------------------


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per line, masked like RedactingFormatter's text: the secrets are
    also looked for as they appear inside a JSON string (quotes, backslashes, newlines
    and non-ASCII characters escaped), tracebacks included."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
        plain = masked_strings(secrets)
        escaped = {json.dumps(s)[1:-1] for s in plain}
        self._secrets = sorted(set(plain) | escaped, key=len, reverse=True)

    def formatTime(self, record: logging.LogRecord,
                   datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record), self._secrets)


def configured_secrets(settings: Settings) -> list[str]:
    """The settings' secrets, for the formatters to mask, and the `notify:` channels'
    (Slack webhook URLs, HMAC keys in NOTIFY_… variables)."""
    return [s.get_secret_value() for s in (
        settings.WEBHOOK_SECRET, settings.PRIVATE_KEY, settings.GITHUB_CLIENT_SECRET,
        settings.SESSION_SECRET, settings.METRICS_TOKEN) if s is not None] + masked_values()


def log_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """The handler `setup_logging` installs (stderr by default), in settings.LOG_FORMAT."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    secrets = configured_secrets(settings)
    if settings.LOG_FORMAT == "json":
        handler.setFormatter(RedactingJsonFormatter(secrets))
        handler.addFilter(ContextFilter())
    else:
        # The text line stays as it was: the webhook line names its delivery and
        # installation itself, and the hot path pays nothing for the bound fields.
        handler.setFormatter(RedactingFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    return handler


def setup_logging(settings: Settings) -> None:
    handler = log_handler(settings)
    # No line shows the caller's file, thread or process: skip collecting them per record
    # (the logging HOWTO's "Optimization"); a third of the cost of a webhook's log line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL)
    # Alembic announces every plugin at INFO; only its warnings matter in production.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
