"""The App's issues in a central issue repository, by marker, shared through Redis.

Finding the issue of a violation the database does not know means listing the App's issues
in the repository: one request per 100 issues, so 20+ for a central repository with
thousands. That listing is done once and kept as a Redis hash (marker → issue number) that
every job reads with one HGET and adds each issue it files to. It is listed again only
when the hash is gone (Redis lost it, or it was not used for INDEX_TTL): a database that
was lost therefore finds its issues again through it, without a listing per violation.
"""

from __future__ import annotations

from urllib.parse import quote

from gidgethub.abc import GitHubAPI
from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from app.actions.base import marker, parse_marker
from app.github.paths import repo_path

INDEX_TTL = 30 * 24 * 3600
# Set once the listing is complete; issues added before that are kept.
_BUILT = "__built__"
# Long enough for a listing of tens of thousands of issues at GitHub's pace.
_BUILD_LOCK_SECONDS = 600


def _key(installation_id: int, repo: str) -> str:
    return f"pe:issue-index:{installation_id}:{repo.lower()}"


class RedisIssueIndex:
    """app.actions.base.IssueIndex for one installation."""

    def __init__(self, redis: Redis, gh: GitHubAPI, installation_id: int, bot_login: str
                 ) -> None:
        self.redis = redis
        self.gh = gh
        self.installation_id = installation_id
        self.bot_login = bot_login

    async def lookup(self, repo: str, mark: str) -> int | None:
        key = _key(self.installation_id, repo)
        if not await self.redis.hexists(key, _BUILT):  # type: ignore[misc]
            await self._build(repo)
        raw = await self.redis.hget(key, mark)  # type: ignore[misc]
        return int(raw) if raw is not None else None

    async def add(self, repo: str, mark: str, number: int) -> None:
        key = _key(self.installation_id, repo)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mark, str(number))
            pipe.expire(key, INDEX_TTL)
            await pipe.execute()

    async def _build(self, repo: str) -> None:
        key = _key(self.installation_id, repo)
        # One listing however many jobs ask at once: the others wait for it.
        async with Lock(self.redis, f"pe:lock:issue-index:{self.installation_id}:{repo.lower()}",
                        timeout=_BUILD_LOCK_SECONDS, blocking_timeout=_BUILD_LOCK_SECONDS):
            if await self.redis.hexists(key, _BUILT):  # type: ignore[misc]
                return
            # marker -> (open, -number): an open issue wins over a closed one, then the oldest.
            best: dict[str, tuple[bool, int]] = {}
            url = (f"{repo_path(repo)}/issues?state=all&per_page=100&direction=asc"
                   f"&creator={quote(self.bot_login, safe='')}")
            async for issue in self.gh.getiter(url):
                parsed = parse_marker(issue.get("body") or "")
                if "pull_request" in issue or parsed is None or parsed[1] is None:
                    continue
                mark = marker(parsed[0], parsed[1])
                rank = (issue.get("state") == "open", -int(issue["number"]))
                if mark not in best or rank > best[mark]:
                    best[mark] = rank
            mapping = {m: str(-n) for m, (_, n) in best.items()}
            async with self.redis.pipeline(transaction=True) as pipe:
                if mapping:
                    pipe.hset(key, mapping=mapping)
                pipe.hset(key, _BUILT, "1")
                pipe.expire(key, INDEX_TTL)
                await pipe.execute()
