"""Installation access tokens, cached in Redis so every process shares one token."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from gidgethub.abc import GitHubAPI
from redis.asyncio import Redis

# Refresh this long before GitHub's expires_at so no request carries a dying token.
REFRESH_MARGIN = 300


def _key(installation_id: int) -> str:
    return f"pe:token:{installation_id}"


class TokenStore:
    def __init__(self, redis: Redis, app_api: GitHubAPI) -> None:
        self._redis = redis
        self._app = app_api  # authenticates with the App's JWT

    async def get(self, installation_id: int) -> str:
        raw = await self._redis.get(_key(installation_id))
        if raw is not None:
            cached: dict[str, Any] = json.loads(raw)
            if cached["expires_at"] - time.time() > REFRESH_MARGIN:
                return str(cached["token"])
        return await self.refresh(installation_id)

    async def refresh(self, installation_id: int) -> str:
        data = await self._app.post(
            f"/app/installations/{installation_id}/access_tokens", data=b""
        )
        token = str(data["token"])
        expires_at = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00"))
        expires = expires_at.timestamp()
        ttl = int(expires - time.time() - REFRESH_MARGIN)
        if ttl > 0:
            await self._redis.set(
                _key(installation_id), json.dumps({"token": token, "expires_at": expires}), ex=ttl
            )
        return token

    async def forget(self, installation_id: int) -> None:
        """Drop the cached token whatever it is (its permissions are those it was made
        with: after the installation accepts new ones, a new token has them)."""
        await self._redis.delete(_key(installation_id))

    async def invalidate(self, installation_id: int, token: str) -> None:
        raw = await self._redis.get(_key(installation_id))
        # Only drop the token that failed; another process may have refreshed already.
        if raw is not None and json.loads(raw)["token"] == token:
            await self._redis.delete(_key(installation_id))
