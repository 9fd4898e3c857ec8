"""Process settings, read from the environment and an optional `.env` file."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/policy-enforcer.db"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


def async_database_url(value: str) -> str:
    """`value` with the async driver we ship; ValueError for anything else."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError("is not a database URL (e.g. postgresql+asyncpg://user@host/db)"
                         ) from None
    # The common forms without a driver get the async driver we ship.
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+asyncpg")
    elif url.drivername == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    if url.drivername not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise ValueError("must be postgresql+asyncpg://… or sqlite+aiosqlite:///…")
    return url.render_as_string(hide_password=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    APP_ID: int | None = None
    PRIVATE_KEY: SecretStr | None = None
    PRIVATE_KEY_PATH: Path | None = None
    WEBHOOK_SECRET: SecretStr | None = None
    GITHUB_CLIENT_ID: str | None = None
    GITHUB_CLIENT_SECRET: SecretStr | None = None
    GITHUB_API_URL: str = "https://api.github.com"
    GITHUB_URL: str = "https://github.com"
    DATABASE_URL: str = DEFAULT_DATABASE_URL
    REDIS_URL: str | None = None
    PORT: int = Field(default=3000, ge=1, le=65535)
    HOST: str = "0.0.0.0"
    LOG_LEVEL: str = "INFO"
    SCAN_CRON: str = "0 0 * * *"
    # Overrides of GitHub's rate limits for the governor, "name=value,...", e.g. for GitHub
    # Enterprise Server whose admins set other secondary limits (app/github/governor.py).
    GITHUB_RATE_LIMITS: str = ""
    # Webhook-triggered scans wait this long so a burst of events for one repo scans once.
    SCAN_DEBOUNCE_SECONDS: float = Field(default=2.0, ge=0, le=300)
    # Issues and comments carry this name; the App's own login is `<slug>[bot]`.
    APP_NAME: str = "policy-enforcer"

    @field_validator("GITHUB_API_URL", "GITHUB_URL")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, v: str) -> str:
        return async_database_url(v)

    @field_validator("GITHUB_RATE_LIMITS")
    @classmethod
    def _limits(cls, v: str) -> str:
        from app.github.governor import parse_limits

        try:
            parse_limits(v)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("GITHUB_RATE_LIMITS: ")) from None
        return v

    @field_validator("LOG_LEVEL")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return v

    @field_validator("SCAN_CRON")
    @classmethod
    def _cron(cls, v: str) -> str:
        from app.cron import parse_cron

        parse_cron(v)
        return v

    @field_validator("PRIVATE_KEY")
    @classmethod
    def _pem(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return None
        # Platforms that cannot hold multi-line variables pass the PEM with `\n` escapes.
        text = v.get_secret_value().replace("\\n", "\n").strip()
        if "-----BEGIN" not in text or "PRIVATE KEY-----" not in text:
            raise ValueError("is not a PEM private key (no -----BEGIN ... PRIVATE KEY----- line)")
        return SecretStr(text + "\n")

    @model_validator(mode="after")
    def _key_file(self) -> Settings:
        if self.PRIVATE_KEY is None and self.PRIVATE_KEY_PATH is not None:
            try:
                text = self.PRIVATE_KEY_PATH.read_text()
            except OSError as exc:
                raise ValueError(f"PRIVATE_KEY_PATH: cannot read {self.PRIVATE_KEY_PATH}: "
                                 f"{exc.strerror}") from None
            self.PRIVATE_KEY = self._pem(SecretStr(text))
        return self

    @property
    def has_app_credentials(self) -> bool:
        return self.APP_ID is not None and self.PRIVATE_KEY is not None

    def private_key_pem(self) -> str:
        if self.PRIVATE_KEY is None:
            raise SettingsError("PRIVATE_KEY: not set (or set PRIVATE_KEY_PATH)")
        return self.PRIVATE_KEY.get_secret_value()

    def webhook_secret(self) -> str | None:
        return None if self.WEBHOOK_SECRET is None else self.WEBHOOK_SECRET.get_secret_value()


def load_settings() -> Settings:
    """Build settings or raise SettingsError with one line naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if msg.startswith("PRIVATE_KEY_PATH:"):
            raise SettingsError(msg) from None
        # Never echo the value: it may be a secret.
        raise SettingsError(f"{loc}: {msg}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"policy-enforcer: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
