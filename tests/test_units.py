"""Small pure pieces: cron parsing, settings errors, slash-command parsing, log masking."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.cron import parse_cron
from app.logs import RedactSecrets
from app.services.commands import parse_commands
from app.settings import Settings, SettingsError, load_settings


def test_parse_cron() -> None:
    assert parse_cron("0 0 * * *") == {"minute": {0}, "hour": {0}}
    assert parse_cron("*/15 1-2 * * 0") == {"minute": {0, 15, 30, 45}, "hour": {1, 2},
                                            "weekday": {6}}
    for bad in ("0 0 * *", "61 0 * * *", "a b c d e", "*/0 * * * *"):
        with pytest.raises(ValueError):
            parse_cron(bad)


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
                                             ("LOG_LEVEL", "LOUD")])
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


def test_parse_commands() -> None:
    body = "thanks!\n/policy rescan\n  /policy   help me\nnot /policy rescan"
    assert parse_commands(body) == [("rescan", ""), ("help", "me")]
    assert parse_commands("/policyrescan") == []


def test_secrets_are_masked_in_logs() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s used", ("hunter22",),
                               None)
    RedactSecrets(["hunter22"]).filter(record)
    assert record.getMessage() == "token *** used"
