"""Parse the five-field SCAN_CRON expression into arq's cron() keyword arguments."""

from __future__ import annotations

from typing import Any

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12),
           ("weekday", 0, 6))


def _field(text: str, lo: int, hi: int, name: str) -> set[int] | None:
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step in {name} field {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"bad range in {name} field {text!r}")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = end = int(part)
        else:
            raise ValueError(f"bad {name} field {text!r}")
        if name == "weekday" and end == 7:
            end = 6 if start != 7 else 0
            if start == 7:
                start = 0
        if not (lo <= start <= hi and lo <= end <= hi and start <= end):
            raise ValueError(f"{name} field {text!r} is out of range {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return values


def parse_cron(expr: str) -> dict[str, Any]:
    """`"0 0 * * *"` → `{"minute": {0}, "hour": {0}}`; raises ValueError when malformed."""
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError("must have five fields: minute hour day month weekday")
    out: dict[str, Any] = {}
    for text, (name, lo, hi) in zip(parts, _FIELDS, strict=True):
        values = _field(text, lo, hi, name)
        if values is not None:
            out[name] = values
    # cron weekday 0 is Sunday; arq (datetime.weekday) counts Monday as 0.
    if "weekday" in out:
        out["weekday"] = {(d - 1) % 7 for d in out["weekday"]}
    return out
