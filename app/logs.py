"""Logging set-up. Secrets never reach the output: the formatter masks the configured
secrets and anything shaped like a GitHub token, in messages and tracebacks alike."""

from __future__ import annotations

import logging
import re

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


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        # Each line of a PEM key too, in case a key is printed in pieces.
        pieces = [line for s in secrets for line in s.splitlines() if len(line) >= 16]
        self._secrets = sorted({s for s in secrets if len(s) >= 4} | set(pieces),
                               key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record), self._secrets)


def setup_logging(settings: Settings) -> None:
    secrets = [s.get_secret_value() for s in (settings.WEBHOOK_SECRET, settings.PRIVATE_KEY,
                                              settings.GITHUB_CLIENT_SECRET) if s is not None]
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    # No line shows the caller's file, thread or process: skip collecting them per record
    # (the logging HOWTO's "Optimization"); a third of the cost of a webhook's log line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL)
    # Alembic announces every plugin at INFO; only its warnings matter in production.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
