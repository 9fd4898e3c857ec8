"""The org's config.yaml: fetched from its `.github` repository, validated, stored.

The last valid config stays in force when a newer one is broken; the installation row
shows the error so the config's authors can see it.
"""

from __future__ import annotations

import base64
import hashlib
import logging

import gidgethub
from gidgethub.abc import GitHubAPI

from app.config import ConfigError, OrgConfig, parse_config
from app.db.models import Installation, utcnow

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


async def refresh_config(gh: GitHubAPI, inst: Installation) -> str:
    """Read config.yaml from GitHub into `inst`; returns the new config status."""
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
    url = f"/repos/{inst.account_login}/{CONFIG_REPO}/contents/{CONFIG_PATH}"
    inst.config_checked_at = utcnow()
    try:
        data = await gh.getitem(url)
    except gidgethub.BadRequest as exc:
        if int(exc.status_code) != 404:
            raise
        inst.config_status = "missing"
        inst.config_error = (f"No {CONFIG_PATH} in {inst.account_login}/{CONFIG_REPO}: "
                             "nothing is enforced until one is added.")
        inst.config_text = None
        inst.config_sha = None
        inst.config_notes = None
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
    inst.config_notes = "\n".join(notes) if notes else None
    return inst.config_status
