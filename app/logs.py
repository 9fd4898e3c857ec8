"""Logging set-up. Secrets from the settings are masked in every record."""

from __future__ import annotations

import logging

from app.settings import Settings


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            masked = message
            for secret in self._secrets:
                masked = masked.replace(secret, "***")
            if masked != message:
                record.msg, record.args = masked, None
        return True


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    secrets = [s.get_secret_value() for s in (settings.WEBHOOK_SECRET, settings.PRIVATE_KEY,
                                              settings.GITHUB_CLIENT_SECRET) if s is not None]
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL)
    # Alembic announces every plugin at INFO; only its warnings matter in production.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
