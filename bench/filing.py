"""A first scan that finds 2,000 violations, filed under GitHub's content limits.

GitHub allows about 80 content-creating requests a minute and 500 an hour per
installation, so 2,000 issues take over four hours. This runs that with GitHub's numbers
and its clock sped up `--speed` times (at 100: a minute is 0.6 s, an hour 36 s), on the
fake GitHub with its secondary limits on, and prints
  issues filed, duplicates, and GitHub's secondary-limit answers (targets: all, 0, 0);
  the time it took, in GitHub hours, against the floor the hourly limit sets;
  how far the scan record's progress got while filing ran ("filed N of M; next batch at");
  how long a slash command waited for its reaction while filing ran (interactive work
  goes ahead of bulk filing), in wall seconds.

One in-process arq worker, real Redis (REDIS_URL or embedded), SQLite. The repositories
have the App's label already, so each violation is one content request.

    .venv/bin/python -m bench.filing [--violations 2000] [--speed 100]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from app.web.scan_pages import filing_text
from bench.common import with_redis
from tests.fakegithub import webhooks as hooks
from tests.fakegithub.server import FakeGitHub
from tests.stack import running_stack
from tests.test_filing import filing_org, governor_limits, issues_filed

PER_MINUTE, PER_HOUR = 80, 500
BULK_SHARE = 0.75  # what bulk filing may use (the rest is kept for interactive work)


async def run(violations: int, speed: float, redis_url: str) -> None:
    minute, hour = 60 / speed, 3600 / speed
    limits = governor_limits(minute=minute, hour=hour, per_minute=PER_MINUTE,
                             per_hour=PER_HOUR, bulk_wait=5 / speed)
    tmp = tempfile.mkdtemp()
    async with FakeGitHub() as gh:
        st = gh.state
        inst, question = filing_org(st, violations, minute=minute, hour=hour,
                                    per_minute=PER_MINUTE, per_hour=PER_HOUR)
        async with running_stack(github_url=gh.url, app_id=gh.app_id,
                                 private_key=gh.private_key_pem, redis_url=redis_url,
                                 database_url=f"sqlite+aiosqlite:///{tmp}/filing.db",
                                 LOG_LEVEL="WARNING", GITHUB_RATE_LIMITS=limits) as stack:
            await stack.redis.flushdb()
            started = time.monotonic()
            await stack.deliver("installation", hooks.installation(st, inst))
            drain = asyncio.create_task(stack.drain())
            progress: list[str] = []
            asked_at = answered_at = None
            comment_id = None
            while not drain.done():
                await asyncio.sleep(0.2)
                scans = [s for s in await stack.scans() if s.kind == "full"]
                if not scans:
                    continue
                text = filing_text(scans[0])
                if text and (not progress or progress[-1] != text):
                    progress.append(text)
                if comment_id is None and scans[0].filing_done >= violations // 4:
                    made = st.add_issue_comment("acme/talk", question.number, "alice",
                                                "/policy rescan")
                    comment_id = int(made["id"])
                    asked_at = time.monotonic()
                    await stack.deliver("issue_comment", hooks.issue_comment(st, made))
                if comment_id is not None and answered_at is None \
                        and st.reactions(comment_id):
                    answered_at = time.monotonic()
            await drain
            elapsed = time.monotonic() - started
            scan = next(s for s in await stack.scans() if s.kind == "full")
    filed, duplicates = issues_filed(st, violations)
    floor_hours = max(0.0, (violations - PER_HOUR * BULK_SHARE) / (PER_HOUR * BULK_SHARE))
    print(f"violations {violations}, GitHub's limits {PER_MINUTE}/minute and {PER_HOUR}/hour "
          f"(bulk filing may use {BULK_SHARE:.0%}), clock x{speed:g}")
    print(f"issues filed {filed}, duplicates {duplicates}, "
          f"secondary-limit answers {st.secondary_limit_responses}")
    print(f"took {elapsed:.0f} s = {elapsed / hour:.2f} GitHub hours "
          f"(the hourly limit's floor: {floor_hours:.2f} h)")
    print(f"scan record at the end: {filing_text(scan)!r}")
    shown = progress if len(progress) <= 6 else [*progress[:3], "...", *progress[-3:]]
    print("progress seen while filing: " + " | ".join(shown))
    if asked_at is not None and answered_at is not None:
        # Wall time: at x100 the worker is busy throughout, unlike at GitHub's own pace.
        print(f"slash command during filing: reaction after {answered_at - asked_at:.2f} s")
    else:
        print("slash command during filing: NOT ANSWERED before filing ended")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--violations", type=int, default=2000)
    parser.add_argument("--speed", type=float, default=100.0)
    args = parser.parse_args()
    with_redis(lambda url: run(args.violations, args.speed, url))


if __name__ == "__main__":
    main()
