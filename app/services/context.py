"""The shared handles a job needs: settings, database, GitHub and the arq Redis."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.github.client import GitHub
from app.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: async_sessionmaker[AsyncSession]
    github: GitHub
    redis: ArqRedis
