"""Slash commands in issue comments: `/policy <command>`. One small function each."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from app.db.models import Scan
from app.github.paths import repo_path
from app.services.context import Services
from app.services.queue import exclusive
from app.services.scan_requests import scan_key
from app.services.scanning import scan_repository
from app.services.store import bump_scan

COMMAND_RE = re.compile(r"^\s*/policy\s+([a-z][a-z-]*)\b(.*)$", re.MULTILINE)
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})


@dataclass
class CommandRequest:
    installation_id: int
    repo_id: int
    full_name: str
    issue_number: int
    comment_id: int
    user: str
    command: str
    args: str


def parse_commands(body: str) -> list[tuple[str, str]]:
    """Every `/policy <name> [args]` line in a comment, in order."""
    return [(m.group(1), m.group(2).strip()) for m in COMMAND_RE.finditer(body or "")]


Handler = Callable[[Services, CommandRequest], Awaitable[str]]


async def _rescan(svc: Services, req: CommandRequest) -> str:
    async with svc.db() as db, db.begin():
        scan = Scan(installation_id=req.installation_id, kind="repo", total=1,
                    repository_id=req.repo_id, trigger=f"command:{req.user}")
        db.add(scan)
        await db.flush()
        scan_id = scan.id
    # The lock serialises with scan_repo jobs; queued ones keep their own requests.
    try:
        async with exclusive(svc.redis, scan_key(req.installation_id, req.repo_id)):
            result = await scan_repository(svc, req.installation_id, req.repo_id)
    except Exception:
        async with svc.db() as db, db.begin():
            await bump_scan(db, scan_id, ok=False)
        raise
    async with svc.db() as db, db.begin():
        await bump_scan(db, scan_id, ok=True, opened=result.opened, resolved=result.resolved)
    if result.status != "ok":
        return f"Rescanned `{req.full_name}`: {result.reason}."
    lines = [f"Rescanned `{req.full_name}`:", "", "| Policy | Result | Details |",
             "| --- | --- | --- |"]
    for name, res in result.results.items():
        mark = "✅ pass" if res.passed else "❌ fail"
        detail = res.message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {name} | {mark} | {detail} |")
    return "\n".join(lines)


# Permission each command needs; the handler runs only when the commenter has it.
COMMANDS: dict[str, tuple[frozenset[str], Handler]] = {
    "rescan": (WRITE_PERMISSIONS, _rescan),
}


async def run_command(svc: Services, req: CommandRequest) -> str:
    """React, check permission, run, reply. Returns the outcome for the delivery log."""
    gh = svc.github.installation(req.installation_id)
    base = f"{repo_path(req.full_name)}"
    reactions = f"{base}/issues/comments/{req.comment_id}/reactions"
    reply = f"{base}/issues/{req.issue_number}/comments"
    entry = COMMANDS.get(req.command)
    if entry is None:
        await gh.post(reactions, data={"content": "confused"})
        known = ", ".join(f"`/policy {c}`" for c in sorted(COMMANDS))
        await gh.post(reply, data={"body": f"@{req.user} unknown command "
                                           f"`/policy {req.command}`. Known: {known}."})
        return "unknown-command"
    needed, handler = entry
    perm = await gh.getitem(f"{base}/collaborators/{quote(req.user, safe='')}/permission")
    granted = {str(perm.get("permission")), str(perm.get("role_name"))}
    if not granted & needed:
        await gh.post(reactions, data={"content": "confused"})
        await gh.post(reply, data={
            "body": f"@{req.user} `/policy {req.command}` needs write permission on "
                    f"`{req.full_name}`; you have `{perm.get('permission')}`."})
        return "refused"
    await gh.post(reactions, data={"content": "eyes"})
    text = await handler(svc, req)
    await gh.post(reply, data={"body": f"@{req.user} {text}"})
    return "done"
