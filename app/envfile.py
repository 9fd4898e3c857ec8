"""The `.env` file that Settings reads: values written by `make run` and by first-run
registration. It holds secrets, so it is always left readable by its owner only."""

from __future__ import annotations

import os
from pathlib import Path


def env_line(key: str, value: str) -> str:
    # One line per variable: newlines (a PEM key's) as \\n escapes, which dotenv undoes.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{key}="{escaped}"'


def env_keys(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.split("=", 1)[0].strip() for line in path.read_text(encoding="utf-8")
            .splitlines() if "=" in line}


def set_env_values(path: Path, values: dict[str, str]) -> None:
    """Set `values` in the file (their old lines replaced, every other line kept)."""
    lines: list[str] = []
    if path.exists():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines()
                 if line.split("=", 1)[0].strip() not in values]
    lines += [env_line(k, v) for k, v in values.items() if v]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # also when the file existed with a wider mode
