"""The org's config.yaml: fetched from its `.github` repository, validated, stored.

Enforcement never switches off by accident. The last valid config stays in force when a
newer one is broken, and also when it cannot be read at all: the `.github` repository is
not among the installation's repositories, or GitHub answers with an error. Only a
`config.yaml` that is gone from a `.github` repository the App can read ends enforcement.
The installation row says why, for the dashboard.
"""

from __future__ import annotations

import base64
import hashlib
import logging

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

from app.config import ConfigError, OrgConfig, parse_config
from app.db.models import Installation, utcnow
from app.github.errors import RateLimited, describe_error
from app.github.paths import repo_path
from app.notify.channels import channel_notes
from app.settings import Settings
from app.yamlsafe import MAX_BYTES

log = logging.getLogger(__name__)

CONFIG_REPO = ".github"
CONFIG_PATH = "config.yaml"

# Parsed configs by text hash: parsing is cheap, but scans of 10,000 repos ask often.
_parsed: dict[str, OrgConfig] = {}


def config_for(inst: Installation) -> OrgConfig | None:
    """The config in force for the installation, or None when it is not configured."""
    if not inst.config_text:
        return None
    digest = hashlib.sha256(inst.config_text.encode()).hexdigest()
    cfg = _parsed.get(digest)
    if cfg is None:
        cfg = parse_config(inst.config_text)
        if len(_parsed) > 256:
            _parsed.clear()
        _parsed[digest] = cfg
    return cfg


# refresh_config's answer when a config that was in force is gone: enforcement stops.
DELETED = "deleted"


def _unreadable(inst: Installation, why: str) -> str:
    kept = (" The last valid config stays in force." if inst.config_text
            else " Nothing is enforced until it can be read.")
    inst.config_status = "unreadable"
    inst.config_error = f"{why}{kept}"
    log.warning("installation %s: %s cannot be read: %s", inst.id, CONFIG_PATH,
                inst.config_error)
    return inst.config_status


async def _repo_readable(gh: GitHubAPI, login: str) -> bool:
    try:
        await gh.getitem(repo_path(f"{login}/{CONFIG_REPO}"))
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) in (403, 404):
            return False
        raise
    return True


async def refresh_config(gh: GitHubAPI, inst: Installation,
                         settings: Settings | None = None) -> str:
    """Read config.yaml from GitHub into `inst`; returns the new config status, or DELETED
    when a config that was in force is gone (the caller ends its violations).

    Rate limits propagate (the job waits and tries again); any other failure to read keeps
    the config in force with the reason recorded. With `settings` (the worker's), the
    notes also name the `notify:` variables this process lacks."""
    try:
        return await _refresh(gh, inst, settings)
    except RateLimited:
        raise
    except gidgethub.GitHubException as exc:
        return _unreadable(inst, f"GitHub answered {describe_error(exc)} when asked for "
                                 f"{inst.account_login}/{CONFIG_REPO}/{CONFIG_PATH}.")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _unreadable(inst, f"GitHub could not be reached ({type(exc).__name__}).")


async def _refresh(gh: GitHubAPI, inst: Installation, settings: Settings | None) -> str:
    if not inst.account_login:
        # First seen through an event without the account: ask GitHub whose it is.
        data = await gh.getitem("/installation/repositories?per_page=1")
        repos = data.get("repositories") or []
        if not repos:
            inst.config_status = "missing"
            inst.config_error = "The installation has no repositories."
            return inst.config_status
        inst.account_login = str(repos[0]["owner"]["login"])
        inst.account_type = str(repos[0]["owner"].get("type", "Organization"))
    login = inst.account_login
    url = f"{repo_path(f'{login}/{CONFIG_REPO}')}/contents/{CONFIG_PATH}"
    inst.config_checked_at = utcnow()
    try:
        data = await gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) != 404:
            raise
        if not await _repo_readable(gh, login):
            why = (f"The App cannot read {login}/{CONFIG_REPO}: it does not exist, or it is "
                   "not among the repositories the installation may access (add it in the "
                   "App's installation settings).")
            if inst.config_text is None:
                # Nothing was ever in force: an org that has not set the App up yet.
                inst.config_status, inst.config_error = "missing", \
                    f"{why} Nothing is enforced until {CONFIG_PATH} is there."
                return inst.config_status
            return _unreadable(inst, why)
        was_in_force = inst.config_text is not None
        inst.config_status = "missing"
        inst.config_error = (f"No {CONFIG_PATH} in {inst.account_login}/{CONFIG_REPO}: "
                             "nothing is enforced until one is added.")
        inst.config_text = None
        inst.config_sha = None
        inst.config_notes = None
        if was_in_force:
            log.warning("installation %s: %s was deleted from %s/%s; enforcement stops",
                        inst.id, CONFIG_PATH, login, CONFIG_REPO)
            inst.config_error = (f"{CONFIG_PATH} was deleted from {login}/{CONFIG_REPO}: "
                                 "nothing is enforced, and the App's open issues were closed. "
                                 "Add it again to resume.")
            return DELETED
        return inst.config_status
    size = int(data.get("size") or 0)
    if size > MAX_BYTES:
        # GitHub's contents API sends no content past 1 MB; the file is not read at all.
        inst.config_status = "invalid"
        kept = " The last valid config stays in force." if inst.config_text else ""
        inst.config_error = (f"{CONFIG_PATH}: the file is {size:,} bytes; the limit is "
                             f"{MAX_BYTES:,} bytes.{kept}")
        return inst.config_status
    text = base64.b64decode(data.get("content") or "").decode("utf-8", errors="replace")
    try:
        cfg = parse_config(text, CONFIG_PATH)
    except ConfigError as exc:
        inst.config_status = "invalid"
        kept = " The last valid config stays in force." if inst.config_text else ""
        inst.config_error = f"{exc}{kept}"
        log.warning("installation %s: invalid %s: %s", inst.id, CONFIG_PATH, exc)
        return inst.config_status
    inst.config_status = "valid"
    inst.config_error = None
    inst.config_text = text
    inst.config_sha = str(data.get("sha") or "")
    notes = cfg.not_enforced_notes()
    if settings is not None:  # `notify:` channels whose variables the worker lacks
        notes += channel_notes(cfg, login, settings)
    inst.config_notes = "\n".join(notes) if notes else None
    return inst.config_status
