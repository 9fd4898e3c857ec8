"""Command line: `python -m app <command>`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.settings import Settings, SettingsError, settings_or_exit

if TYPE_CHECKING:
    from app.services.context import Services

T = TypeVar("T")


def _run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop where it is installed (not on Windows): the web process
    spends about a tenth less CPU per webhook delivery on it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _require_redis(settings: Settings) -> str:
    if not settings.REDIS_URL:
        print("policy-enforcer: invalid setting: REDIS_URL: not set "
              "(`python -m app dev` starts an embedded Redis)", file=sys.stderr)
        raise SystemExit(2)
    return settings.REDIS_URL


async def _check_db(settings: Settings) -> None:
    from app.db.migrate import NotMigrated, require_migrated

    try:
        await require_migrated(settings.DATABASE_URL)
    except NotMigrated as exc:
        print(f"policy-enforcer: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"policy-enforcer: DATABASE_URL: cannot connect: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _serve_web(settings: Settings, redis_url: str, stop: asyncio.Event) -> None:
    from aiohttp import web
    from arq import create_pool
    from arq.connections import RedisSettings

    from app.web.app import create_app, create_runner

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    runner = create_runner(create_app(settings, redis=pool, database_url=settings.DATABASE_URL))
    await runner.setup()
    site = web.TCPSite(runner, settings.HOST, settings.PORT)
    await site.start()
    print(f"policy-enforcer: web listening on http://{settings.HOST}:{settings.PORT}",
          file=sys.stderr)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await pool.aclose()


async def _run_worker(settings: Settings, redis_url: str, stop: asyncio.Event) -> None:
    """Run arq until asked to stop. When Redis goes away arq's loop ends; a new worker is
    started once Redis answers again (backing off up to 30 s), so a Redis restart needs no
    process restart. Any other failure exits, for the process manager to restart us."""
    from redis.exceptions import RedisError

    from tasks.worker import create_worker

    delay = 1.0
    while not stop.is_set():
        started = time.monotonic()
        worker = create_worker(settings, redis_url, handle_signals=False)
        task = asyncio.create_task(worker.async_run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            stopping.cancel()
            await worker.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
        stopping.cancel()
        exc = task.exception()
        with contextlib.suppress(Exception):
            await worker.close()
        if not isinstance(exc, RedisError | OSError | TimeoutError):
            stop.set()
            print(f"policy-enforcer: worker stopped: {exc or 'arq exited'}", file=sys.stderr)
            raise SystemExit(1)
        if time.monotonic() - started > 60:
            delay = 1.0
        print(f"policy-enforcer: worker lost Redis ({exc}); reconnecting in {delay:.0f} s",
              file=sys.stderr)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(30.0, delay * 2)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _require_session_secret(settings: Settings) -> None:
    try:
        settings.require_session_secret()
    except SettingsError as exc:
        print(f"policy-enforcer: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def ensure_session_secret(env_file: Path) -> bool:
    """`make run`: give a development checkout a SESSION_SECRET of its own in `.env` on
    first start. Returns True when one was written."""
    from app.envfile import env_keys, set_env_values

    if os.environ.get("SESSION_SECRET") or "SESSION_SECRET" in env_keys(env_file):
        return False
    set_env_values(env_file, {"SESSION_SECRET": secrets.token_urlsafe(48)})
    return True


def cmd_web(settings: Settings) -> int:
    redis_url = _require_redis(settings)
    _require_session_secret(settings)

    async def main() -> None:
        await _check_db(settings)
        await _serve_web(settings, redis_url, _stop_event())

    _run(main())
    return 0


def cmd_worker(settings: Settings) -> int:
    redis_url = _require_redis(settings)

    async def main() -> None:
        await _check_db(settings)
        await _run_worker(settings, redis_url, _stop_event())

    _run(main())
    return 0


def cmd_migrate(settings: Settings) -> int:
    from app.db.migrate import upgrade

    _run(upgrade(settings.DATABASE_URL))
    print("policy-enforcer: database migrated", file=sys.stderr)
    return 0


def cmd_dev(settings: Settings) -> int:
    """Web + worker in one process, with an embedded Redis when REDIS_URL is unset."""
    from app.db.migrate import upgrade
    from app.embedded_redis import EmbeddedRedis

    _require_session_secret(settings)
    embedded: EmbeddedRedis | None = None
    redis_url = settings.REDIS_URL
    if not redis_url:
        embedded = EmbeddedRedis(persist_dir=Path("data/redis")).start()
        redis_url = embedded.url
        print(f"policy-enforcer: embedded Redis on {redis_url}", file=sys.stderr)

    async def main() -> None:
        if settings.DATABASE_URL.startswith("sqlite"):
            await upgrade(settings.DATABASE_URL)
        await _check_db(settings)
        stop = _stop_event()
        assert redis_url is not None  # noqa: S101 - narrows the type; set just above
        await asyncio.gather(_serve_web(settings, redis_url, stop),
                             _run_worker(settings, redis_url, stop))

    try:
        _run(main())
    finally:
        if embedded is not None:
            embedded.stop()
    print("policy-enforcer: stopped", file=sys.stderr)
    return 0


async def _services(settings: Settings, redis_url: str) -> Services:
    """Services for a command run in the foreground (the worker's, in this process)."""
    from arq import create_pool
    from arq.connections import RedisSettings

    from app.db.session import sessionmaker
    from app.github.client import GitHub
    from app.services.context import Services

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    return Services(settings=settings, db=sessionmaker(settings.DATABASE_URL), redis=pool,
                    github=GitHub(api_url=settings.GITHUB_API_URL, redis=pool,
                                  app_id=settings.APP_ID,
                                  private_key=settings.private_key_pem()
                                  if settings.PRIVATE_KEY else None,
                                  limits=settings.rate_limits()))


def cmd_scan(settings: Settings, installation: int | None, repo: str | None, dry_run: bool,
             queue: bool) -> int:
    """Scan in the foreground and print a table (`--dry-run`: write nothing, act on
    nothing), or with `--queue` queue full scans for the workers."""
    from sqlalchemy import select

    from app.db.models import Installation

    redis_url = _require_redis(settings)
    if not queue and installation is None:
        print("policy-enforcer: give --installation ID (or --queue to queue full scans for "
              "the workers)", file=sys.stderr)
        return 2

    async def main() -> int:
        await _check_db(settings)
        from app.services.foreground import ForegroundError, scan_dry_run, scan_recorded, table
        from app.services.scan_requests import request_full_scan

        svc = await _services(settings, redis_url)
        try:
            if queue:
                async with svc.db() as session:
                    query = select(Installation.id).where(Installation.active.is_(True))
                    if installation is not None:
                        query = query.where(Installation.id == installation)
                    ids = list(await session.scalars(query))
                for inst_id in ids:
                    await request_full_scan(svc, inst_id, "user")
                print(f"policy-enforcer: full scan queued for {len(ids)} installation(s)")
                return 0 if ids else 1
            assert installation is not None  # noqa: S101 - checked above
            run = scan_dry_run if dry_run else scan_recorded
            try:
                rows = await run(svc, installation, repo)
            except ForegroundError as exc:
                print(f"policy-enforcer: {exc}", file=sys.stderr)
                return 1
            print(table(rows))
            failing = sum(1 for r in rows if r.outcome == "FAIL")
            print(f"\n{len(rows)} results, {failing} failing"
                  + (" (dry run: nothing recorded, no action taken)" if dry_run else
                     " (recorded; actions queued for the workers)"))
            return 0
        finally:
            await svc.redis.aclose()
            await svc.github.close()

    return _run(main())


def cmd_fix(settings: Settings, repo: str, policy: str) -> int:
    """Apply one fix now, against GitHub (whether or not the policy lists `fix`), and print
    what was done; it is recorded in the action log like any other action."""
    redis_url = _require_redis(settings)

    async def main() -> int:
        await _check_db(settings)
        from app.services.fixes import FixRefused, find_violation, fix_once

        svc = await _services(settings, redis_url)
        try:
            inst_id, violation_id = await find_violation(svc, repo, policy)
            report = await fix_once(svc, inst_id, violation_id)
        except FixRefused as exc:
            print(f"policy-enforcer: {exc}", file=sys.stderr)
            return 1
        finally:
            await svc.redis.aclose()
            await svc.github.close()
        url = f" {report.url}" if report.url else ""
        print(f"policy-enforcer: fix {report.repository} / {report.policy}: "
              f"{report.status}: {report.detail}{url}")
        return 1 if report.status == "failed" else 0

    return _run(main())


def cmd_check_config(path: str) -> int:
    from app.config import ConfigError, parse_config

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        cfg = parse_config(text, Path(path).name)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{path}: valid, {len(cfg.policies)} policies")
    for note in cfg.not_enforced_notes():
        print(f"  note: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="policy-enforcer")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("web", help="serve webhooks and the dashboard")
    sub.add_parser("worker", help="run an arq worker (scans, actions, nightly cron)")
    sub.add_parser("dev", help="web + worker (+ embedded Redis when REDIS_URL is unset)")
    sub.add_parser("migrate", help="apply database migrations")
    scan = sub.add_parser("scan", help="scan now and print the results (or --queue)")
    scan.add_argument("--installation", type=int, help="the installation id")
    scan.add_argument("--repo", help="only this repository (OWNER/NAME)")
    scan.add_argument("--dry-run", action="store_true",
                      help="read and judge only: record nothing, take no action")
    scan.add_argument("--queue", action="store_true",
                      help="queue full scans for the workers instead (all installations "
                           "unless --installation)")
    fix = sub.add_parser("fix", help="apply one policy's fix to one repository now")
    fix.add_argument("--repo", required=True, help="OWNER/NAME")
    fix.add_argument("--policy", required=True, help="the policy's name in the config")
    check = sub.add_parser("check-config", help="validate a config.yaml file")
    check.add_argument("file")
    sub.add_parser("config-schema", help="print the config's JSON Schema (for editors)")
    args = parser.parse_args(argv)

    if args.command == "check-config":
        return cmd_check_config(args.file)
    if args.command == "config-schema":
        from app.config.schema import config_schema

        print(json.dumps(config_schema(), indent=2))
        return 0
    if args.command == "dev" and ensure_session_secret(Path(".env")):
        print("policy-enforcer: generated SESSION_SECRET into .env", file=sys.stderr)
    settings = settings_or_exit()
    from app.logs import setup_logging

    setup_logging(settings)
    if args.command == "web":
        return cmd_web(settings)
    if args.command == "worker":
        return cmd_worker(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "dev":
        return cmd_dev(settings)
    if args.command == "scan":
        return cmd_scan(settings, args.installation, args.repo, args.dry_run, args.queue)
    if args.command == "fix":
        return cmd_fix(settings, args.repo, args.policy)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
