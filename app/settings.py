"""Process settings, read from the environment and an optional `.env` file."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from app.github.governor import Limits

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


MIN_SESSION_SECRET = 32


def session_secret_weakness(value: str) -> str | None:
    """Why `value` is too weak to key the session cookie, or None."""
    if len(value) < MIN_SESSION_SECRET:
        return (f"is too short ({len(value)} characters): use at least {MIN_SESSION_SECRET} "
                "random characters")
    if len(set(value)) < 10:
        return "is too predictable (fewer than 10 distinct characters): use a random value"
    return None


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
    HOST: str = "0.0.0.0"  # noqa: S104 - a web service; containers and PaaS need it
    LOG_LEVEL: str = "INFO"
    SCAN_CRON: str = "0 0 * * *"
    # Overrides of GitHub's rate limits for the governor, "name=value,...", e.g. for GitHub
    # Enterprise Server whose admins set other secondary limits (app/github/governor.py).
    GITHUB_RATE_LIMITS: str = ""
    # Webhook-triggered scans wait this long so a burst of events for one repo scans once.
    SCAN_DEBOUNCE_SECONDS: float = Field(default=2.0, ge=0, le=300)
    # Issues and comments carry this name; the App's own login is `<slug>[bot]`.
    APP_NAME: str = "policy-enforcer"
    # Dashboard sessions: the key of the encrypted, signed session cookie (required by the
    # web process; `make run` generates one into .env) and how long a sign-in lasts.
    SESSION_SECRET: SecretStr | None = None
    SESSION_MAX_AGE: int = Field(default=8 * 3600, ge=300, le=30 * 24 * 3600)
    # This deployment's public origin (https://enforcer.example.com): OAuth and manifest
    # callbacks, links in check runs and issues, Secure cookies when it is https.
    PUBLIC_URL: str | None = None
    # GitHub logins that may use the job monitor for every installation (operators).
    ADMIN_LOGINS: str = ""
    # `Authorization: Bearer <METRICS_TOKEN>` opens /metrics; unset, /metrics is off.
    METRICS_TOKEN: SecretStr | None = None
    # text (default) or json: one JSON object a line with delivery, job and installation ids.
    LOG_FORMAT: str = "text"
    # The first-run registration flow is offered on loopback addresses only, unless this is 1.
    SETUP_ALLOWED: bool = False
    # How long a user's access to an installation (owner / team member) is trusted.
    ACCESS_CACHE_SECONDS: int = Field(default=120, ge=0, le=600)
    # How often the worker asks GitHub for webhook deliveries that failed and redelivers
    # them (GitHub never does by itself). Must divide an hour: 60, 300, 600, 900, 1800, 3600.
    DELIVERY_RECOVERY_INTERVAL: int = Field(default=600, ge=60, le=3600)
    # No delivery reached us for this long while GitHub reports failed ones: the webhook
    # path is broken (URL, proxy, secret), so the installations concerned get a full scan.
    WEBHOOK_STALE_HOURS: float = Field(default=24, gt=0, le=24 * 30)
    # `notify:` channels (app/notify). Off (the default), messages go only to https URLs
    # whose addresses are public: an org's config cannot make the worker call localhost,
    # private ranges or cloud metadata. 1 allows those, and http (a private deployment).
    NOTIFY_ALLOW_PRIVATE_NETWORKS: bool = False
    # 1: a config may only name variables NOTIFY_<ORG>__… (its own org's login, upper-case,
    # other characters as _), so orgs sharing a deployment cannot use each other's secrets.
    NOTIFY_ENV_PER_ORG: bool = False
    # A failed message is retried after this long, doubling up to an hour; a batch still
    # failing this many hours after it was due (and tried 3 times) is given up, and says so.
    NOTIFY_RETRY_SECONDS: float = Field(default=30, gt=0, le=3600)
    NOTIFY_GIVE_UP_HOURS: float = Field(default=24, gt=0, le=24 * 30)

    @field_validator("GITHUB_API_URL", "GITHUB_URL")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/")

    @field_validator("PUBLIC_URL")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://enforcer.example.com")
        return v.rstrip("/")

    @field_validator("LOG_FORMAT")
    @classmethod
    def _log_format(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in {"text", "json"}:
            raise ValueError("must be text or json")
        return v

    @field_validator("SESSION_SECRET")
    @classmethod
    def _session_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return None
        weakness = session_secret_weakness(v.get_secret_value())
        if weakness:
            raise ValueError(weakness)
        return v

    @field_validator("METRICS_TOKEN")
    @classmethod
    def _metrics_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if len(v.get_secret_value()) < 16:
            raise ValueError("is too short: use at least 16 random characters")
        return v

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

    @field_validator("DELIVERY_RECOVERY_INTERVAL")
    @classmethod
    def _recovery_interval(cls, v: int) -> int:
        if v % 60 or 3600 % v:
            raise ValueError("must be a whole number of minutes that divides an hour "
                             "(60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600)")
        return v

    @field_validator("SCAN_CRON")
    @classmethod
    def _cron(cls, v: str) -> str:
        from app.cron import parse_schedule

        return parse_schedule(v).expr

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

    def rate_limits(self) -> Limits:
        """The governor's limits: GitHub's, with GITHUB_RATE_LIMITS's overrides."""
        from app.github.governor import parse_limits

        return parse_limits(self.GITHUB_RATE_LIMITS)

    def private_key_pem(self) -> str:
        if self.PRIVATE_KEY is None:
            raise SettingsError("PRIVATE_KEY: not set (or set PRIVATE_KEY_PATH)")
        return self.PRIVATE_KEY.get_secret_value()

    def webhook_secret(self) -> str | None:
        return None if self.WEBHOOK_SECRET is None else self.WEBHOOK_SECRET.get_secret_value()

    @property
    def has_oauth(self) -> bool:
        return bool(self.GITHUB_CLIENT_ID) and self.GITHUB_CLIENT_SECRET is not None

    def admin_logins(self) -> frozenset[str]:
        """ADMIN_LOGINS, lower-cased (GitHub logins are case-insensitive)."""
        return frozenset(p.strip().lower() for p in self.ADMIN_LOGINS.replace(",", " ").split()
                         if p.strip())

    def require_session_secret(self) -> str:
        """The session key, or SettingsError naming the variable (the web process needs it)."""
        if self.SESSION_SECRET is None:
            raise SettingsError("SESSION_SECRET: not set (the dashboard's session cookie is "
                                "encrypted with it; use 32+ random characters, e.g. "
                                "`python -c \"import secrets; print(secrets.token_urlsafe(32))\"`)")
        return self.SESSION_SECRET.get_secret_value()


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
