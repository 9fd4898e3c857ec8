"""Small pure pieces: cron parsing, settings errors, slash-command parsing, log masking."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.cron import parse_schedule
from app.logs import RedactingFormatter
from app.services.commands import parse_commands
from app.settings import Settings, SettingsError, load_settings


def test_schedule_follows_cron_semantics() -> None:
    from datetime import UTC, datetime

    def runs(expr: str, start: datetime, n: int) -> list[str]:
        out, at = [], start
        for _ in range(n):
            at = parse_schedule(expr).next_after(at)
            out.append(at.strftime("%a %d %H:%M"))
        return out

    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a Tuesday
    # 7 is Sunday, as 0 is: a hand-made parser used to drop it.
    assert runs("0 0 * * 5-7", start, 3) == ["Fri 04 00:00", "Sat 05 00:00", "Sun 06 00:00"]
    # Day-of-month and day-of-week both restricted: either one matches (cron ORs them).
    assert runs("0 3 1,15 * 1", start, 3) == ["Mon 07 03:00", "Mon 14 03:00", "Tue 15 03:00"]
    assert runs("*/15 1-2 * * 0", start, 2) == ["Sun 06 01:00", "Sun 06 01:15"]
    s = parse_schedule("0 3 1,15 * 1")
    assert s.arq_fields() == {"minute": {0}, "hour": {3}, "month": set(range(1, 13)),
                              "second": 0}
    # arq wakes the job at 03:00 every day; only the schedule's days run it.
    assert s.matches(datetime(2026, 12, 7, 3, 0, 20, tzinfo=UTC))
    assert not s.matches(datetime(2026, 12, 8, 3, 0, tzinfo=UTC))
    assert s.previous(datetime(2026, 12, 9, tzinfo=UTC)) == datetime(2026, 12, 7, 3,
                                                                    tzinfo=UTC)
    for bad in ("0 0 * *", "61 0 * * *", "a b c d e", "*/0 * * * *", "0 0 31 2 *"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_private_key_with_escaped_newlines(monkeypatch: pytest.MonkeyPatch) -> None:
    pem = _pem()
    monkeypatch.setenv("PRIVATE_KEY", pem.replace("\n", "\\n"))
    monkeypatch.setenv("APP_ID", "12")
    settings = Settings(_env_file=None)
    assert settings.private_key_pem().strip() == pem.strip()
    assert settings.has_app_credentials


def test_private_key_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(_pem())
    monkeypatch.setenv("PRIVATE_KEY_PATH", str(key))
    assert "PRIVATE KEY" in Settings(_env_file=None).private_key_pem()
    monkeypatch.setenv("PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match="PRIVATE_KEY_PATH"):
        load_settings()


@pytest.mark.parametrize(("name", "value"), [("PORT", "eighty"), ("SCAN_CRON", "every night"),
                                             ("PRIVATE_KEY", "not-a-key-s3cr3t"),
                                             ("GITHUB_API_URL", "ftp://x"),
                                             ("LOG_LEVEL", "LOUD"),
                                             ("DATABASE_URL", "not a url"),
                                             ("DATABASE_URL", "mysql://db/x"),
                                             ("GITHUB_RATE_LIMITS", "speed=11")])
def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                        value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(name)
    assert value not in str(err.value) or name != "PRIVATE_KEY"


def test_cli_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "app", "migrate"], capture_output=True,
                          text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PORT": "nope",
                               "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "PORT" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", [None, "too-short", "x" * 64])
def test_web_without_a_strong_session_secret_is_one_line_and_exit_2(
        tmp_path: Path, value: str | None) -> None:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1/0",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    if value is not None:
        env["SESSION_SECRET"] = value
    proc = subprocess.run([sys.executable, "-m", "app", "web"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "SESSION_SECRET" in proc.stderr and "Traceback" not in proc.stderr
    if value is not None:
        assert value not in proc.stderr


def test_dev_generates_a_session_secret_once(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from app.__main__ import ensure_session_secret
    from app.settings import session_secret_weakness

    monkeypatch.delenv("SESSION_SECRET", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("APP_ID=1\n")
    assert ensure_session_secret(env_file) is True
    assert ensure_session_secret(env_file) is False  # kept on the next start
    lines = env_file.read_text().splitlines()
    assert lines[0] == "APP_ID=1"  # other lines kept
    (secret,) = [line.split("=", 1)[1].strip('"') for line in lines
                 if line.startswith("SESSION_SECRET=")]
    assert session_secret_weakness(secret) is None
    assert env_file.stat().st_mode & 0o077 == 0


def test_database_url_gets_the_async_driver() -> None:
    make = Settings  # a plain postgres:// URL, as hosting platforms hand it out
    assert make(DATABASE_URL="postgres://u:p@h/db", _env_file=None).DATABASE_URL == \
        "postgresql+asyncpg://u:p@h/db"
    assert make(DATABASE_URL="sqlite:///x.db", _env_file=None).DATABASE_URL == \
        "sqlite+aiosqlite:///x.db"


def test_worker_cron_is_utc_and_runs_once() -> None:
    from datetime import UTC

    from tasks.worker import worker_settings

    ws = worker_settings(Settings(SCAN_CRON="30 2 * * 1", _env_file=None), "redis://x:1")
    assert ws["timezone"] is UTC
    nightly, recovery, *others = ws["cron_jobs"]
    sweep = {c.name: c for c in others}["archive_sweep"]
    assert sweep.unique and (sweep.minute, sweep.hour) == (7, None)
    assert (nightly.minute, nightly.hour, nightly.second) == ({30}, {2}, 0)
    assert nightly.unique and nightly.keep_result_s == 3600
    assert recovery.name == "recover_deliveries" and recovery.minute == {0, 10, 20, 30, 40, 50}
    ws = worker_settings(Settings(DELIVERY_RECOVERY_INTERVAL=300, _env_file=None), "redis://x:1")
    assert ws["cron_jobs"][1].minute == set(range(0, 60, 5))
    with pytest.raises(ValueError, match="divides an hour"):
        Settings(DELIVERY_RECOVERY_INTERVAL=420, _env_file=None)


def test_parse_commands() -> None:
    body = "thanks!\n/policy rescan\n  /policy   help me\nnot /policy rescan"
    assert parse_commands(body) == [("rescan", ""), ("help", "me")]
    assert parse_commands("/policyrescan") == []


def test_secrets_are_masked_in_logs_and_tracebacks() -> None:
    fmt = RedactingFormatter("%(message)s", ["hunter22"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "secret %s, token %s",
                               ("hunter22", "ghs_" + "a1" * 18), None)
    assert fmt.format(record) == "secret ***, token ghs_***"
    try:
        raise RuntimeError("bad hunter22")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    out = fmt.format(record)
    assert "RuntimeError: bad ***" in out and "hunter22" not in out
    # Fine-grained PATs have no "gh" in them; the fast path must still catch them.
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pat %s",
                               ("github_pat_" + "B2" * 20,), None)
    assert fmt.format(record) == "pat github_pat_***"
