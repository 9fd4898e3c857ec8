"""CSV and JSON exports of the dashboard's tables (`?format=csv` / `?format=json`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

FORMATS = ("csv", "json")
# Spreadsheet programs run a cell that starts with these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def wants_export(request: web.Request) -> str | None:
    kind = request.query.get("format", "")
    return kind if kind in FORMATS else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_response(kind: str, name: str, columns: Sequence[str],
                    rows: Sequence[dict[str, Any]]) -> web.Response:
    headers = {"Content-Disposition": f'attachment; filename="{name}.{kind}"',
               "Cache-Control": "no-store"}
    if kind == "json":
        return web.Response(text=json.dumps(list(rows), indent=1), headers=headers,
                            content_type="application/json", charset="utf-8")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return web.Response(text=out.getvalue(), headers=headers, content_type="text/csv",
                        charset="utf-8")
