"""Slash commands in issue comments: `/policy <command>`. One small function each."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from app.services.context import Services
from app.services.queue import exclusive, start_coalesced
from app.services.scanning import scan_key, scan_repository

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
    key = scan_key(req.installation_id, req.repo_id)
    await start_coalesced(svc.redis, key)
    async with exclusive(svc.redis, key):
        result = await scan_repository(svc, req.installation_id, req.repo_id)
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
    base = f"/repos/{req.full_name}"
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
